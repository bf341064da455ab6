"""The real tus-js-client (npm) in Node against the module (tus_client.js):
a 256 MiB upload whose connection a proxy cuts three times at random
points, resumed each time, ends with the exact bytes; an upload begun on
one Apache and finished on another (same storage directory and Redis);
an upload left unfinished expires and leaves nothing.

Needs node and `npm ci` run here (scripts/test does both)."""

import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import secupload_harness as H  # noqa: E402
import tus_util as T  # noqa: E402
from secupload_stack import Stack, running  # noqa: E402

BIG = int(os.environ.get("SU_TUS_BIG_MIB", "256")) << 20


def _need(what, ok):
    if not ok:
        if os.environ.get("CI"):
            pytest.fail("%s is missing (npm ci in tests/tus)" % what,
                        pytrace=False)
        pytest.skip("%s is missing: the tus client test is skipped" % what)


def _second_node(s):
    """Another Apache on the same storage directory, keys and Redis."""
    site = H.Site("tus-node2")
    lines = [
        'SecUploadStorageDir "%s"' % s.site.storage,
        'SecUploadKeyFile "%s"' % s.key1,
        'SecUploadKeyFile "%s"' % s.key2,
        "SecUploadRedisServer 127.0.0.1:%d" % s.redis.port,
        'SecUploadRedisPrefix "%s"' % s.prefix,
        "SecUploadSync On",
        "LimitRequestBody 0",
        "<Location /api/files/>\n SetHandler secupload-files\n"
        " SecUploadEnable files\n</Location>",
    ]
    conf = site.write_conf(site.conf_text("\n".join(lines) + T.locations(2)))
    return H.Apache(site, conf)


@pytest.fixture(scope="module")
def two(request):
    _need("node", shutil.which("node"))
    _need("tus-js-client (npm ci in tests/tus)", os.path.isdir(
        os.path.join(HERE, "node_modules", "tus-js-client")))
    assert os.path.exists(H.module_path()), H.module_path()
    s = Stack("tusjs", extra=T.locations(2))
    b = _second_node(s)
    s.on_stop.insert(0, lambda: b.site.cleanup())
    orig_stop = s.stop

    def stop():
        b.stop()
        problems = b.take_problems()
        return orig_stop() + problems
    s.stop = stop
    s.start()
    b.start()
    s.node2 = b
    yield s
    problems = s.stop()
    assert not problems, problems


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    path = tmp_path_factory.mktemp("tus") / "big.bin"
    data = os.urandom(BIG)
    path.write_bytes(data)
    return str(path), data


def _node(mode, file, targets, path="/api/tus/", timeout=170):
    env = dict(os.environ, SU_FILE=file, SU_MODE=mode, SU_PATH=path,
               SU_TARGETS=",".join("127.0.0.1:%d" % t for t in targets))
    r = subprocess.run(["node", os.path.join(HERE, "tus_client.js")], env=env,
                       cwd=HERE, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=timeout)
    assert r.returncode == 0, r.stdout[-4000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def _stored(s, url, data):
    fid = T.upload_id(url)
    meta = T.check_stored(s, fid, data, name="big.bin")
    assert meta["sha256"] == hashlib.sha256(data).hexdigest()
    return fid


def test_256mib_cut_three_times(two, big):
    out = _node("cuts", big[0], [two.apache.port])
    assert len(out["cuts"]) == 3, out
    print("tus-js-client: %d MiB in %d ms with cuts at %s; retries: %s" % (
        BIG >> 20, out["ms"], [c["sent"] for c in out["cuts"]],
        out["retries"]))
    _stored(two, out["url"], big[1])


def test_begun_on_one_node_finished_on_another(two, big):
    out = _node("nodes", big[0], [two.apache.port, two.node2.port])
    assert len(out["cuts"]) == 1, out
    fid = _stored(two, out["url"], big[1])
    # the first node kept what it received (SU00464), the second stored it
    assert "SU00464" in two.apache.log_text() and fid in two.apache.log_text()
    assert "SU00021" in two.node2.log_text() and fid in two.node2.log_text()


def test_unfinished_upload_expires_leaving_nothing(two, big):
    small = big[0] + ".small"
    with open(small, "wb") as f:
        f.write(big[1][:3 << 20])
    out = _node("start", small, [two.apache.port], path="/tus-short/")
    fid = T.upload_id(out["first_url"])
    assert H._wait_for(lambda: T.tus_keys(two, fid) == []
                       and not os.path.exists(T.tus_file(two, fid)), 10)
    T.assert_gone(two, fid)
    assert [e for e in two.rv.audit_all()
            if e.get("event") == "upload.expired" and e.get("id") == fid]
