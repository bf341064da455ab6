"""The module's figures in mod_status: /server-status?auto lines
(SecUploadStored: N, ...) follow a known sequence of uploads, rejections,
downloads and deletes exactly; they are summed over all children (under
prefork, uploads held open at once are in different children); uploads in
flight are seen while they are; an unsettled marker is counted until a
request settles it; and the counts survive a graceful and a plain restart
(docs/configuration.md, "server-status")."""

import os
import re
import secrets
import signal
import time

import pytest
import requests

import secupload_harness as H
from faults_util import own_stack

STATUS_CONF = """
LoadModule status_module %s/mod_status.so
ExtendedStatus On
<Location /server-status>
    SetHandler server-status
</Location>
""" % H.MODULE_DIR

CLOSE = {"Connection": "close"}
RAW = dict(CLOSE, **{"Content-Type": "application/octet-stream"})


@pytest.fixture(scope="module")
def st(module_so, request):
    yield from own_stack(request, "status", extra=STATUS_CONF)


def figures(s):
    """The SecUpload* lines of /server-status?auto, as numbers."""
    r = requests.get(s.url("/server-status?auto"), headers=CLOSE, timeout=30)
    assert r.status_code == 200, r.text[:300]
    got = dict(re.findall(r"^(SecUpload\w+): (\d+)$", r.text, re.M))
    assert "SecUploadStored" in got, "no secupload lines:\n%s" % r.text[-2000:]
    return {k: int(v) for k, v in got.items()}


def delta(before, after):
    return {k: after[k] - before.get(k, 0) for k in after}


def upload(s, data, path="/api/upload/"):
    r = s.post(data, dict(RAW), path=path)
    assert r.status_code == 201, r.text[:300]
    return r.json()["id"]


def test_status_counts_a_known_sequence(st):
    s = st
    before = figures(s)
    sizes = [1000, 20000, 300000, 7, 4096, 65536]
    ids = [upload(s, secrets.token_bytes(n)) for n in sizes]
    # rejections with known reasons, each leaving nothing behind
    for _ in range(2):
        s.expect_error(lambda: s.post(secrets.token_bytes(2048), dict(RAW),
                                      path="/small/"), 413, "too_large")
    data = secrets.token_bytes(4000)
    s.expect_error(lambda: s.post(data, dict(RAW, **{
        "Content-Digest": H.content_digest(data + b"x")})), 400, "bad_request")
    s.expect_error(lambda: s.post(b"x" * 100, dict(CLOSE, **{
        "Content-Type": "application/zip"}), path="/typed/"),
        415, "unsupported_type")
    s.expect_error(lambda: requests.get(s.url("/api/upload/"), headers=CLOSE,
                                        timeout=30), 405, "method_not_allowed")
    # three downloads, two deletes
    for i in (0, 1, 2):
        r = requests.get(s.url("/api/files/" + ids[i]), headers=CLOSE,
                         timeout=30)
        assert r.status_code == 200 and len(r.content) == sizes[i]
    for i in (4, 5):
        r = requests.delete(s.url("/api/files/" + ids[i]), headers=CLOSE,
                            timeout=30)
        assert r.status_code == 204, r.text
    after = figures(s)
    d = delta(before, after)
    assert d["SecUploadStored"] == len(sizes), d
    assert d["SecUploadBytesIn"] == sum(sizes), d
    assert d["SecUploadRejected"] == 5, d
    assert d["SecUploadRejectedTooLarge"] == 2, d
    assert d["SecUploadRejectedBadRequest"] == 1, d
    assert d["SecUploadRejectedUnsupportedType"] == 1, d
    assert d["SecUploadRejectedMethodNotAllowed"] == 1, d
    for k in ("Unavailable", "InternalError", "InsufficientStorage",
              "Aborted", "RequestTimeout"):
        assert d["SecUploadRejected" + k] == 0, (k, d)
    assert d["SecUploadDownloads"] == 3, d
    assert d["SecUploadBytesOut"] == sum(sizes[:3]), d
    assert d["SecUploadDeletes"] == 2, d
    assert d["SecUploadRedisErrors"] == 0, d
    assert after["SecUploadInFlight"] == 0, after
    assert after["SecUploadRedisConnectionsInUse"] == 0, after
    assert after["SecUploadRedisConnections"] >= 1, after


def test_status_html_has_a_section(st):
    r = requests.get(st.url("/server-status"), headers=CLOSE, timeout=30)
    assert r.status_code == 200
    assert "<h2>mod_secupload</h2>" in r.text, r.text[-2000:]
    assert "<code>SecUploadStored</code>" in r.text


HELD = 4


def _open_uploads(s, n, size):
    """n uploads whose bodies stop halfway: all in progress at once."""
    conns = []
    for _ in range(n):
        body = secrets.token_bytes(size)
        c = H.RawConn(s.apache.port)
        c.send(H.request_head("POST", "/api/upload/", [
            ("Content-Type", "application/octet-stream"),
            ("Content-Length", str(size)), ("Connection", "close")]))
        c.send(body[:size // 2])
        conns.append((c, body))
    return conns


def test_status_sums_all_children(st):
    """Uploads held open at once run in as many prefork children; their
    figures meet in one count, in flight and then stored."""
    s = st
    before = figures(s)
    log_at = len(s.apache.log_text())
    conns = _open_uploads(s, HELD, 100000)
    try:
        assert H._wait_for(lambda: figures(s)["SecUploadInFlight"] == HELD,
                           10), figures(s)
        for c, body in conns:
            c.send(body[len(body) // 2:])
        for c, _ in conns:
            assert c.read_response().status == 201
    finally:
        for c, _ in conns:
            c.close()
    assert H._wait_for(lambda: figures(s)["SecUploadInFlight"] == 0, 10)
    d = delta(before, figures(s))
    assert d["SecUploadStored"] == HELD, d
    assert d["SecUploadBytesIn"] == HELD * 100000, d
    pids = set(re.findall(r"\[pid (\d+):[^\]]*\].*upload stored",
                          s.apache.log_text()[log_at:]))
    if H.mpm() == "prefork":
        assert len(pids) == HELD, pids


def test_status_counts_unsettled_markers(st):
    """A marker left in .unsettled is counted until a request that reaches
    Redis settles it."""
    s = st
    mdir = os.path.join(s.site.storage, ".unsettled")
    os.makedirs(mdir, mode=0o700, exist_ok=True)
    H._chown_server_user(mdir)
    marker = os.path.join(mdir, secrets.token_hex(16))
    with open(marker, "w") as f:
        f.write("{}")
    H._chown_server_user(marker)
    try:
        assert figures(s)["SecUploadUnsettled"] == 1
        upload(s, b"settles the marker")
        assert H._wait_for(lambda: figures(s)["SecUploadUnsettled"] == 0, 5)
        assert not os.path.exists(marker)
    finally:
        if os.path.exists(marker):
            os.unlink(marker)


def test_status_counts_redis_down(st):
    """Redis gone: the 503 counts as unavailable, and as a Redis error."""
    s = st
    before = figures(s)
    files_before = s.files()
    s.redis.stop()
    try:
        r = s.post(b"no redis", dict(RAW))
        assert r.status_code == 503 and r.json()["code"] == "unavailable", \
            r.text
        assert s.files() == files_before
    finally:
        s.redis.start()
    d = delta(before, figures(s))
    assert d["SecUploadRejectedUnavailable"] == 1, d
    assert d["SecUploadRejected"] == 1, d
    assert d["SecUploadRedisErrors"] >= 1, d
    upload(s, b"redis is back")


def _restarted(s, sig, timeout=60):
    """Signal the parent; wait for the new generation to serve."""
    done = "resuming normal operations"
    n = s.apache.log_text().count(done)
    s.apache.signal(sig)
    assert H._wait_for(lambda: s.apache.log_text().count(done) > n, timeout)
    assert s.apache.wait_serving(timeout)


@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGHUP],
                         ids=["graceful", "restart"])
def test_status_counts_survive_restart(st, sig):
    s = st
    upload(s, b"before the restart")
    before = figures(s)
    assert before["SecUploadStored"] >= 1
    _restarted(s, sig)
    time.sleep(0.5)
    survived = figures(s)
    for k in ("SecUploadStored", "SecUploadBytesIn", "SecUploadRejected",
              "SecUploadDownloads", "SecUploadDeletes"):
        assert survived[k] == before[k], (k, before, survived)
    upload(s, b"after")
    assert figures(s)["SecUploadStored"] == before["SecUploadStored"] + 1


def _in_flight_now(s):
    try:
        return figures(s)["SecUploadInFlight"]
    except requests.RequestException:
        return None   # no child serving yet


def test_status_forgets_a_killed_child(st):
    """A child killed with an upload in flight never counts it down: its
    figures are left out once it is gone, not kept for good."""
    s = st
    conns = _open_uploads(s, 1, 100000)
    try:
        assert H._wait_for(lambda: figures(s)["SecUploadInFlight"] == 1, 10)
        for pid in H.child_pids(s.apache.proc.pid):
            os.kill(pid, signal.SIGKILL)
        # prefork: the parent forks new children a few at a time
        assert H._wait_for(lambda: _in_flight_now(s) == 0, 30), figures(s)
    finally:
        conns[0][0].close()
    assert s.apache.wait_serving(30)
    # the kills are this test's own doing
    problems = [p for p in s.apache.take_problems()
                if "exit signal Killed" not in p]
    assert not problems, problems
