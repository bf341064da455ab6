"""Configuration is validated when it is read: `apache2 -t` names the bad
directive (or the bad key file), and start-up refuses what it cannot use."""

import os
import pwd
import time

import pytest
import requests

import secupload_harness as H


class ConfSite:
    def __init__(self):
        self.site = H.Site("conf")
        self.key, _ = self.site.make_key("good.key")
        self.redis_port = H.free_port()  # nothing listens: must not matter

    def conf(self, server=None, location=None, key=None, storage=True,
             extra=""):
        lines = []
        if storage:
            lines.append('SecUploadStorageDir "%s"' % self.site.storage)
        lines.append('SecUploadKeyFile "%s"' % (key or self.key))
        lines.append("SecUploadRedisServer 127.0.0.1:%d" % self.redis_port)
        lines += server or []
        lines += ["<Location /api/upload/>", "    SetHandler secupload",
                  "    SecUploadEnable upload"]
        lines += ["    " + x for x in (location or [])]
        lines += ["</Location>", extra]
        return self.site.write_conf(self.site.conf_text("\n".join(lines)))


@pytest.fixture
def cs(module_so):
    c = ConfSite()
    yield c
    c.site.cleanup()


def test_good_config_passes(cs):
    rc, out = H.config_test(cs.conf())
    assert rc == 0, out
    assert "Syntax OK" in out


@pytest.mark.parametrize("where,line,name", [
    ("location", "SecUploadMaxSize abc", "SecUploadMaxSize"),
    ("location", "SecUploadMaxSize -5", "SecUploadMaxSize"),
    ("location", "SecUploadMaxSize 10Q", "SecUploadMaxSize"),
    ("server", "SecUploadRedisTimeout -1", "SecUploadRedisTimeout"),
    ("server", "SecUploadRedisTimeout soon", "SecUploadRedisTimeout"),
    ("server", "SecUploadSync maybe", "SecUploadSync"),
    ("location", "SecUploadSync maybe", "SecUploadSync"),
    ("server", "SecUploadRedisDatabase x", "SecUploadRedisDatabase"),
    ("server", "SecUploadRedisDatabase -1", "SecUploadRedisDatabase"),
    ("server", "SecUploadRedisServer 127.0.0.1:notaport",
     "SecUploadRedisServer"),
    ("server", "SecUploadAuditMaxLen lots", "SecUploadAuditMaxLen"),
    ("location", "SecUploadOwnerOnly perhaps", "SecUploadOwnerOnly"),
    ("location", "SecUploadStorageDir /tmp", "SecUploadStorageDir"),
    ("location", "SecUploadAllowedTypes */*", "SecUploadAllowedTypes"),
    ("location", "SecUploadAllowedTypes image", "SecUploadAllowedTypes"),
    ("location", "SecUploadAllowedTypes image/png/x", "SecUploadAllowedTypes"),
    ("location", "SecUploadAllowedTypes im@ge/*", "SecUploadAllowedTypes"),
    ("server", "SecUploadFormatVersion 3", "SecUploadFormatVersion"),
    ("server", "SecUploadFormatVersion 0", "SecUploadFormatVersion"),
    ("server", "SecUploadFormatVersion v2", "SecUploadFormatVersion"),
    ("location", "SecUploadFormatVersion 1", "SecUploadFormatVersion"),
    ("server", "SecUploadRedisSentinel sumaster", "SecUploadRedisSentinel"),
    ("server", "SecUploadRedisSentinel sumaster 127.0.0.1:70000",
     "SecUploadRedisSentinel"),
    ("server", "SecUploadRedisSentinel sumaster /run/sentinel.sock",
     "SecUploadRedisSentinel"),
    ("server", "SecUploadRedisUser", "SecUploadRedisUser"),
    ("server", "SecUploadRedisUser uploader", "SecUploadRedisUser"),
    ("server", "SecUploadRedisWaitReplicas some", "SecUploadRedisWaitReplicas"),
    ("server", "SecUploadRedisWaitReplicas 1 0", "SecUploadRedisWaitReplicas"),
    ("server", "SecUploadRedisWaitReplicas 1 100 200",
     "SecUploadRedisWaitReplicas"),
    # WAIT must end before the command timeout does
    ("server", "SecUploadRedisWaitReplicas 1 2000", "SecUploadRedisWaitReplicas"),
])
def test_bad_directive_value(cs, where, line, name):
    conf = cs.conf(server=[line]) if where == "server" else \
        cs.conf(location=[line])
    rc, out = H.config_test(conf)
    assert rc != 0, "accepted %r:\n%s" % (line, out)
    assert name.lower() in out.lower(), "%r not named:\n%s" % (name, out)


def test_missing_storage_dir(cs):
    rc, out = H.config_test(cs.conf(storage=False))
    assert rc != 0, out
    assert "secuploadstoragedir" in out.lower(), out


@pytest.mark.parametrize("case", ["mode0644", "mode0440", "63hex", "nothex",
                                  "missing", "empty"])
def test_bad_key_file(cs, case):
    path = os.path.join(cs.site.keydir, "bad-%s.key" % case)
    good = "ab" * 32 + "\n"
    if case == "mode0644":
        cs.site.make_key(os.path.basename(path), good, 0o644)
    elif case == "mode0440":
        cs.site.make_key(os.path.basename(path), good, 0o440)
    elif case == "63hex":
        cs.site.make_key(os.path.basename(path), good[:63] + "\n", 0o400)
    elif case == "nothex":
        cs.site.make_key(os.path.basename(path), "zz" * 32 + "\n", 0o400)
    elif case == "empty":
        cs.site.make_key(os.path.basename(path), "", 0o400)
    rc, out = H.config_test(cs.conf(key=path))
    assert rc != 0, "accepted key file %s:\n%s" % (case, out)
    assert path in out, "key path not named:\n%s" % out


def _start_fails(cs, conf):
    a = H.Apache(cs.site, conf)
    a.launch()
    try:
        a.proc.wait(timeout=H.startup_timeout())
    except Exception:
        pytest.fail("Apache kept running with this configuration")
    finally:
        a.stop()
    return a.stopped_rc, a.read(a.outlog) + a.read(a.errlog)


def test_storage_dir_must_exist(cs):
    missing = os.path.join(cs.site.root, "no-such-dir")
    conf = cs.conf(storage=False, server=['SecUploadStorageDir "%s"'
                                          % missing])
    rc, out = _start_fails(cs, conf)
    assert rc != 0
    assert missing in out, out


@pytest.mark.skipif(not H.is_root(), reason="needs root to drop to www-data")
def test_storage_dir_must_be_writable_by_server_user(cs):
    ro = os.path.join(cs.site.root, "root-only")
    os.mkdir(ro)
    os.chmod(ro, 0o700)  # owned by root: the server's user cannot write
    conf = cs.conf(storage=False, server=['SecUploadStorageDir "%s"' % ro])
    rc, out = _start_fails(cs, conf)
    assert rc != 0
    assert ro in out, out


@pytest.mark.skipif(not H.is_root(), reason="needs root to drop to www-data")
def test_storage_dir_behind_unreachable_ancestor_is_refused(cs):
    """The storage dir itself is www-data's, but a root-only directory
    above it keeps the server's user out: start-up fails naming that one."""
    locked = os.path.join(cs.site.root, "root-only")
    os.mkdir(locked)
    os.chmod(locked, 0o700)
    inner = os.path.join(locked, "deeper", "storage")
    os.makedirs(inner)
    os.chmod(os.path.dirname(inner), 0o755)
    H._chown_server_user(inner)
    os.chmod(inner, 0o700)
    conf = cs.conf(storage=False, server=['SecUploadStorageDir "%s"' % inner])
    rc, out = _start_fails(cs, conf)
    assert rc != 0
    lines = [ln for ln in out.splitlines() if "SU00340" in ln]
    assert lines, out
    assert "no search permission on %s " % locked in lines[0], lines
    assert "www-data" in lines[0], lines
    assert H.storage_files(inner) == {}


@pytest.mark.skipif(not H.is_root(), reason="needs root to drop to www-data")
def test_storage_dir_behind_reachable_ancestors_starts(cs):
    """The same layout with the ancestor searchable by www-data's group
    (not by others): the group counts, and the server starts."""
    parent = os.path.join(cs.site.root, "group-only")
    os.mkdir(parent)
    inner = os.path.join(parent, "storage")
    os.mkdir(inner)
    H._chown_server_user(inner)
    os.chmod(inner, 0o700)
    os.chown(parent, 0, pwd.getpwnam(H.SERVER_USER).pw_gid)
    os.chmod(parent, 0o710)
    conf = cs.conf(storage=False, server=['SecUploadStorageDir "%s"' % inner])
    a = H.Apache(cs.site, conf).start()
    try:
        out = a.read(a.errlog)
        assert "SU00340" not in out, out
    finally:
        a.stop()


def _warning_lines(text):
    return [line for line in text.splitlines()
            if "LimitRequestBody" in line]


def _start_and_read(cs, conf):
    a = H.Apache(cs.site, conf).start()
    try:
        assert requests.get(a.url("/hello.txt"), timeout=10).status_code == 200
        time.sleep(0.2)
        return a.read(a.errlog) + a.read(a.outlog)
    finally:
        a.stop()


def test_limit_request_body_below_max_size_warns(cs):
    conf = cs.conf(location=["SecUploadMaxSize 10M", "LimitRequestBody 1024"])
    lines = _warning_lines(_start_and_read(cs, conf))
    assert lines, "no start-up warning about LimitRequestBody < " \
        "SecUploadMaxSize"
    assert any(":warn]" in ln or "warn" in ln.lower() for ln in lines), lines


def test_limit_request_body_unlimited_no_warning(cs):
    conf = cs.conf(location=["SecUploadMaxSize 10M"],
                   extra="LimitRequestBody 0")
    assert not _warning_lines(_start_and_read(cs, conf))


def test_redis_down_at_start_up_is_no_error(cs):
    """Nothing listens on the Redis port: Apache starts, uploads get 503."""
    a = H.Apache(cs.site, cs.conf()).start()
    try:
        r = requests.post(a.url("/api/upload/"), data=b"x" * 1000, timeout=30,
                          headers={"Content-Type": "text/plain"})
        assert r.status_code == 503, (r.status_code, r.text)
        assert r.json().get("code") == "unavailable"
        assert r.headers.get("Retry-After", "").strip().isdigit()
        assert H.storage_files(cs.site.storage) == {}
    finally:
        a.stop()


@pytest.mark.parametrize("before", [
    "SecUploadRedisServer 127.0.0.1:1",
    "SecUploadRedisSentinel sumaster 127.0.0.1:1",
    "SecUploadRedisServer /nonexistent/redis.sock",
])
def test_later_redis_address_wins(before):
    """As Debian's conf-enabled/ files override the module's .conf: the
    address read last is the one used, whichever directive set the other."""
    from secupload_stack import Stack
    s = Stack("redis-last", extra="")
    try:
        conf = open(s.apache.conf_path).read()
        mine = "SecUploadRedisServer 127.0.0.1:%d" % s.redis.port
        assert mine in conf
        with open(s.apache.conf_path, "w") as f:
            f.write(conf.replace(mine, before + "\n" + mine))
        s.start()
        data = os.urandom(5000)
        s.check_stored(s.post_raw(data), data)
    finally:
        assert not s.stop()
