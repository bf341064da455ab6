"""The Apache + Redis pair the upload tests talk to, and the contract checks
every test uses: a stored upload is verified down to the bytes on disk and
the Redis records; a rejected one must have left nothing behind."""

import hashlib
import json
import os
import re
import secrets
import stat
import sys
import warnings
from datetime import datetime, timezone

import pytest
import requests

import secupload_harness as H


def upload_locations(htpasswd=None):
    """The Locations shared by the session server and the Redis-outage one."""
    text = """
LimitRequestBody 0
<Location /api/upload/>
    SetHandler secupload
    SecUploadEnable upload
</Location>
<Location /small/>
    SetHandler secupload
    SecUploadEnable upload
    SecUploadMaxSize 1K
</Location>
<Location /typed/>
    SetHandler secupload
    SecUploadEnable upload
    SecUploadAllowedTypes image/* text/plain
</Location>
<Location /typed-limited/>
    SetHandler secupload
    SecUploadEnable upload
    SecUploadAllowedTypes image/png
    LimitRequestBody 1000
</Location>
<Location /field/>
    SetHandler secupload
    SecUploadEnable upload
    SecUploadFieldName doc
</Location>
<Location /nosync/>
    SetHandler secupload
    SecUploadEnable upload
    SecUploadSync Off
</Location>
<Location /api/files/>
    SetHandler secupload-files
    SecUploadEnable files
</Location>
<Location /nommap-files/>
    SetHandler secupload-files
    SecUploadEnable files
    EnableMMAP Off
</Location>
"""
    if htpasswd:
        text += """
<Location /auth/>
    SetHandler secupload
    SecUploadEnable upload
    AuthType Basic
    AuthName "uploads"
    AuthBasicProvider file
    AuthUserFile "%s"
    Require valid-user
</Location>
<Location /ofiles/>
    SetHandler secupload-files
    SecUploadEnable files
    SecUploadOwnerOnly On
    AuthType Basic
    AuthName "files"
    AuthBasicProvider file
    AuthUserFile "%s"
    Require valid-user
</Location>
""" % (htpasswd, htpasswd)
    return text


class Stack:
    """An Apache with the module and its Redis, and the contract checks."""

    def __init__(self, tag, redis_password=None, redis_db=0, extra="",
                 redis_timeout=2000, format_version=None):
        """format_version: SecUploadFormatVersion (None: H.upload_format(),
        0: no directive, the module's default)."""
        self.site = H.Site(tag)
        self.redis = H.RedisServer(self.site.root, password=redis_password)
        self.redis_db = redis_db
        self.prefix = "t%s:" % secrets.token_hex(4)
        self.key1, self.kek1 = self.site.make_key("kek1.key")
        self.key2, self.kek2 = self.site.make_key("kek2.key")
        self.htpasswd = self.site.write_htpasswd({"alice": "wonderland",
                                                 "bob": "builder"})
        server = [
            'SecUploadStorageDir "%s"' % self.site.storage,
            'SecUploadKeyFile "%s"' % self.key1,
            'SecUploadKeyFile "%s"' % self.key2,
            "SecUploadRedisServer 127.0.0.1:%d" % self.redis.port,
            "SecUploadRedisTimeout %d" % redis_timeout,
            'SecUploadRedisPrefix "%s"' % self.prefix,
            "SecUploadSync On",
        ]
        if format_version is None:
            format_version = H.upload_format()
        self.format_version = format_version
        if format_version:
            server.append("SecUploadFormatVersion %d" % format_version)
        if redis_password:
            server.append('SecUploadRedisPassword "%s"' % redis_password)
        if redis_db:
            server.append("SecUploadRedisDatabase %d" % redis_db)
        body = "\n".join(server) + "\n" + upload_locations(self.htpasswd) \
            + extra
        conf = self.site.write_conf(self.site.conf_text(body))
        self.apache = H.Apache(self.site, conf)
        self.on_stop = []  # run once Apache is down, before the files go

    def start(self):
        self.redis.start()
        self.apache.start()
        return self

    def stop(self):
        problems = []
        try:
            self.apache.stop()
            problems = self.apache.take_problems()
        finally:
            self.redis.stop()
            for fn in self.on_stop:
                fn()
        if not problems:
            self.site.cleanup()
        return problems

    # ---- views ----
    def url(self, path="/api/upload/"):
        return self.apache.url(path)

    @property
    def rv(self):
        return H.RedisView(self.redis.client(db=self.redis_db), self.prefix)

    @property
    def keks(self):
        return [self.kek1, self.kek2]

    def files(self):
        return H.storage_files(self.site.storage)

    # ---- requests ----
    def post(self, body, headers=None, path="/api/upload/", timeout=120,
             **kw):
        return requests.post(self.url(path), data=body, headers=headers or {},
                             timeout=timeout, **kw)

    def post_raw(self, data, path="/api/upload/", timeout=120):
        """A raw upload: the body is the file."""
        return self.post(data, {"Content-Type": "application/octet-stream"},
                         path=path, timeout=timeout)

    def post_multipart(self, parts, path="/api/upload/", headers=None, **mp):
        body, ctype = H.multipart(parts, **mp)
        h = {"Content-Type": ctype}
        h.update(headers or {})
        return self.post(body, h, path=path), body

    # ---- contract checks ----
    def check_stored(self, resp, plain, name=None, content_type=None,
                     user="", body_len=None):
        """A 201 and everything a 201 promises. Returns the JSON."""
        status = getattr(resp, "status_code", None) or resp.status
        text = getattr(resp, "text", None)
        if text is None:
            text = resp.body.decode("utf-8", "replace")
        assert status == 201, "expected 201, got %s: %s" % (status, text[:500])
        headers = resp.headers
        assert headers.get("content-type", "").split(";")[0].strip().lower() \
            == "application/json", headers
        doc = json.loads(text)
        assert doc.get("status") == "ok", doc
        assert doc.get("message") == "File uploaded and encrypted.", doc
        fid = doc.get("id")
        assert isinstance(fid, str) and H.ID_RE.match(fid), doc
        assert headers.get("location") == "/api/files/" + fid, headers
        assert doc.get("size") == len(plain), doc
        assert doc.get("sha256") == hashlib.sha256(plain).hexdigest(), doc
        if name is not None:
            assert doc.get("name") == name, doc
        assert isinstance(doc.get("name"), str)
        assert "/" not in doc["name"] and "\\" not in doc["name"], doc
        if content_type is not None:
            assert doc.get("content_type") == content_type, doc

        # on disk: the file, mode 0600, owned by the server, decrypting exactly
        rel = "%s/%s.enc" % (fid[:2], fid)
        path = os.path.join(self.site.storage, rel)
        st = os.lstat(path)
        assert stat.S_ISREG(st.st_mode), rel
        assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
        assert st.st_uid == H.server_uid()
        with open(path, "rb") as f:
            blob = f.read()
        v2 = blob[:8] == H.MAGIC2
        assert v2 == (self.format_version != 1), blob[:8]
        if v2:
            want = H.v2_file_size(len(plain), int.from_bytes(blob[88:92], "big"))
            iv = blob[92:108]
        else:
            want = H.HEADER_LEN + (len(plain) // 16 + 1) * 16 + H.TAG_LEN
            iv = blob[88:104]
        assert len(blob) == want, (len(blob), want)
        out, kek = H.decrypt_blob(blob, self.keks, fid)
        assert kek == self.kek1, "not encrypted under the first key file"
        assert out == plain, "decrypted bytes differ from the upload"
        assert not H.stray_files(self.site.storage), \
            H.stray_files(self.site.storage)

        # Redis: the hash and the audit entry
        rv = self.rv
        meta = rv.meta(fid)
        assert meta, "no metadata hash %sfile:%s" % (self.prefix, fid)
        assert meta.get("id") == fid, meta
        assert meta.get("name") == doc["name"], meta
        assert meta.get("size") == str(len(plain)), meta
        assert meta.get("sha256") == doc["sha256"], meta
        assert meta.get("content_type") == doc["content_type"], meta
        assert meta.get("key_id") == H.key_id(self.kek1).hex(), meta
        assert meta.get("path") == rel, meta
        assert meta.get("iv") == iv.hex(), meta
        created = meta.get("created", "")
        assert H.RFC3339_UTC_RE.match(created), meta
        when = datetime.strptime(created[:19], "%Y-%m-%dT%H:%M:%S").replace(
            tzinfo=timezone.utc)
        drift = abs((datetime.now(timezone.utc) - when).total_seconds())
        assert drift < 300, "created %s is %ds off" % (created, drift)
        assert meta.get("client_ip") == "127.0.0.1", meta
        assert meta.get("user") == user, meta
        assert meta.get("request_id"), meta
        entries = [e for e in rv.audit_all()
                   if e.get("event") == "upload.stored" and e.get("id") == fid]
        assert len(entries) == 1, "audit entries for %s: %r" % (fid, entries)
        e = entries[0]
        assert e.get("status") == "201", e
        assert e.get("client_ip") == "127.0.0.1", e
        assert e.get("user") == user, e
        assert e.get("request_id") == meta["request_id"], (e, meta)
        assert e.get("time"), e
        assert re.match(r"^\d+$", e.get("bytes", "")), e
        if body_len is not None:
            assert int(e["bytes"]) in (len(plain), body_len), e
        self.assert_logged(meta["request_id"], fid)
        return doc

    def assert_logged(self, request_id, text):
        """The outcome is in the error log, tagged with the request's log id
        (the request_id recorded in Redis)."""
        def found():
            return [ln for ln in self.apache.log_text().splitlines()
                    if "[secupload:" in ln and text in ln
                    and "[%s]" % request_id in ln]
        assert H._wait_for(found, 2.0), \
            "no secupload log line with [%s] and %r" % (request_id, text)

    def expect_error(self, send, status, code, audit=True, settle=2.0):
        """send() -> response; it must be `status` with the JSON error body,
        leave no file (temp or final) and no metadata, and (audit=True) add an
        upload.rejected entry with reason == code."""
        rv = self.rv
        files_before = self.files()
        keys_before = rv.file_keys()
        mark = rv.audit_mark()
        resp = send()
        got = getattr(resp, "status_code", None) or resp.status
        text = getattr(resp, "text", None)
        if text is None:
            text = resp.body.decode("utf-8", "replace")
        assert got == status, "expected %d, got %d: %s" % (status, got,
                                                           text[:500])
        ctype = resp.headers.get("content-type", "")
        assert ctype.split(";")[0].strip().lower() == "application/json", \
            "error body is %r: %s" % (ctype, text[:300])
        doc = json.loads(text)
        assert doc.get("status") == "error", doc
        assert doc.get("code") == code, doc
        assert isinstance(doc.get("message"), str) and doc["message"], doc
        self.assert_nothing_kept(files_before, keys_before, settle)
        if audit:
            entries = H._wait_for(
                lambda: [e for e in rv.audit_since(mark)
                         if e.get("event") == "upload.rejected"], settle)
            assert entries, "no upload.rejected audit entry (new entries: %r)" \
                % rv.audit_since(mark)
            e = entries[-1]
            assert e.get("reason") == code, e
            assert e.get("status") == str(status), e
            assert e.get("client_ip") == "127.0.0.1", e
            assert e.get("request_id"), e
            assert e.get("time"), e
            self.assert_logged(e["request_id"], code)
        return resp, doc

    def assert_nothing_kept(self, files_before, keys_before, settle=2.0):
        now = self.files()
        if now != files_before:
            # tolerated only if it vanishes moments after the answer
            H._wait_for(lambda: self.files() == files_before, settle)
            late = self.files()
            assert late == files_before, "left in storage: %r" % sorted(
                set(late) - set(files_before))
            warnings.warn("a temp file outlived the error response: %r"
                          % sorted(set(now) - set(files_before)))
        keys = self.rv.file_keys()
        assert keys == keys_before, "metadata left: %r" % sorted(
            keys - keys_before)


def running(request, s):
    """Generator body of a fixture: start s (stopping it again if that
    fails), yield it, then stop it and fail on log problems."""
    try:
        s.start()
    except Exception:
        s.stop()
        raise
    yield s
    report_shutdown(request, s.stop())


def report_shutdown(request, problems):
    """Log problems seen while the servers stopped (leak reports come only
    then) fail the fixture's teardown."""
    if not problems:
        return
    msg = "server log problems at shutdown:\n" + "\n".join(problems[:40])
    if request.session.shouldfail or request.session.shouldstop:
        # already stopping (-x): a teardown error here would be reported
        # as an internal error; say it plainly instead
        sys.stderr.write("\n" + msg + "\n")
        return
    pytest.fail(msg, pytrace=False)


# --------------------------------------------------------------------------
# Beyond one machine: Redis with a replica and sentinels, several nodes


class RedisHA:
    """A Redis master, its replicas and three sentinels (quorum 2), all on
    loopback ports of their own in workdir, stopped by pid. Two replicas by
    default: after the master is lost, the promoted one still has a replica
    to acknowledge WAIT 1."""

    def __init__(self, workdir, sentinels=3, replicas=2):
        self.workdir = workdir
        self.master = H.RedisServer(workdir)
        self.replicas = [H.RedisServer(workdir, extra_args=[
            "--replicaof", "127.0.0.1", str(self.master.port)])
            for _ in range(replicas)]
        self.sentinels = [H.SentinelServer(workdir, self.master.port)
                          for _ in range(sentinels)]
        self.servers = {r.port: r for r in [self.master] + self.replicas}

    def start(self):
        self.master.start()
        for r in self.replicas:
            r.start()
        assert H._wait_for(self._linked, 10.0), "the replicas did not link"
        for s in self.sentinels:
            s.start()
        # a failover needs sentinels that know each other and the replicas
        need = (len(self.sentinels) - 1, len(self.replicas))
        assert H._wait_for(lambda: all(s.knows() >= need
                                       for s in self.sentinels), 20.0, 0.2), \
            [s.knows() for s in self.sentinels]
        return self

    def _linked(self):
        return all(r.client().info("replication").get("master_link_status")
                   == "up" for r in self.replicas)

    def sentinel_lines(self):
        return "SecUploadRedisSentinel sumaster " + " ".join(
            "127.0.0.1:%d" % s.port for s in self.sentinels)

    def master_port(self):
        """The master the sentinels agree on now (a majority), or None."""
        ports = [s.master_port() for s in self.sentinels]
        best = max(set(ports), key=ports.count)
        return best if ports.count(best) * 2 > len(ports) else None

    def current(self):
        """The RedisServer that is the master now."""
        return self.servers.get(self.master_port())

    def stop(self):
        for s in self.sentinels:
            s.stop()
        for r in self.replicas + [self.master]:
            r.stop()


NODE_LOCATIONS = """
LimitRequestBody 0
<Location /api/upload/>
    SetHandler secupload
    SecUploadEnable upload
</Location>
<Location /api/files/>
    SetHandler secupload-files
    SecUploadEnable files
</Location>
"""


class Cluster:
    """Two Apache nodes with the module (their own ports and logs, one
    storage directory, one key set, one Redis) behind a third Apache with
    mod_proxy_balancer. redis_lines: how the nodes find Redis (or a list of
    such lists, one per node)."""

    def __init__(self, tag, redis_lines, wait_replicas=None, timeout=2000):
        self.nodes = []
        self.site = H.Site(tag + "-a")
        self.key1, self.kek1 = self.site.make_key("kek1.key")
        self.prefix = "t%s:" % secrets.token_hex(4)
        self.sites = [self.site, H.Site(tag + "-b")]
        server = [
            'SecUploadStorageDir "%s"' % self.site.storage,
            'SecUploadKeyFile "%s"' % self.key1,
            "SecUploadRedisTimeout %d" % timeout,
            'SecUploadRedisPrefix "%s"' % self.prefix,
            "SecUploadSync On",
        ]
        if wait_replicas:
            server.append("SecUploadRedisWaitReplicas %s" % wait_replicas)
        if isinstance(redis_lines[0], str):
            redis_lines = [redis_lines] * len(self.sites)
        for site, lines in zip(self.sites, redis_lines):
            body = "\n".join(server + list(lines)) + "\n" + NODE_LOCATIONS
            conf = site.write_conf(site.conf_text(body))
            self.nodes.append(H.Apache(site, conf))
        self.lb_site = H.Site(tag + "-lb")
        self.lb = H.Apache(self.lb_site, self.lb_site.write_conf(
            self.lb_site.conf_text(self.balancer_conf(), with_module=False)))

    def balancer_conf(self):
        mods = ["proxy", "proxy_http", "proxy_balancer", "slotmem_shm",
                "lbmethod_byrequests"]
        lines = ["LoadModule %s_module %s/mod_%s.so" % (m, H.MODULE_DIR, m)
                 for m in mods]
        lines.append('<Proxy "balancer://nodes">')
        for site in self.sites:
            lines.append("    BalancerMember http://127.0.0.1:%d retry=0"
                         % site.port)
        lines += ["    ProxySet lbmethod=byrequests", "</Proxy>",
                  "ProxyPass /api/ balancer://nodes/api/",
                  "ProxyPassReverse /api/ balancer://nodes/api/"]
        return "\n".join(lines)

    def start(self):
        for n in self.nodes:
            n.start()
        self.lb.start()
        return self

    def stop(self):
        problems = []
        for a in [self.lb] + self.nodes:
            try:
                a.stop()
                problems += a.take_problems()
            except Exception as e:  # stop the others all the same
                problems.append("stop: %r" % e)
        if not problems:
            for site in self.sites + [self.lb_site]:
                site.cleanup()
        return problems

    @property
    def keks(self):
        return [self.kek1]

    def url(self, path, node=None):
        a = self.lb if node is None else self.nodes[node]
        return a.url(path)

    def post(self, data, node=None, timeout=30):
        return requests.post(self.url("/api/upload/", node), data=data,
                             headers={"Content-Type":
                                      "application/octet-stream"},
                             timeout=timeout)

    def files(self):
        return H.storage_files(self.site.storage)

    def stored_ids(self):
        return {os.path.basename(rel)[:-4] for rel in self.files()
                if rel.endswith(".enc")}

    def decrypts(self, fid, plain):
        path = os.path.join(self.site.storage, fid[:2], fid + ".enc")
        with open(path, "rb") as f:
            out, _ = H.decrypt_blob(f.read(), self.keks, fid)
        return out == plain
