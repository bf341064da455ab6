"""Unknown outcomes of the metadata write, settled later by another request.

A proxy between Apache and Redis (tests/soak/exec_reply_lost.py) lets Redis
run an upload's write, then drops the reply and refuses connections for
longer than SecUploadRedisTimeout: the module marks the upload on disk, and
a later request that reaches Redis removes the metadata."""

import os
import secrets
import signal
import sys
import threading
import time

import pytest
import requests

import secupload_harness as H
from secupload_stack import Stack, running

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "soak"))
from exec_reply_lost import DropAfterExec  # noqa: E402


@pytest.fixture(scope="module")
def lossy(module_so, request):
    s = Stack("settle")
    proxy_port = s.redis.port              # what Apache's config names
    s.redis = H.RedisServer(s.site.root)   # the real one, elsewhere
    proxies = []

    def start():
        s.redis.start()
        proxies.append(DropAfterExec(proxy_port, s.redis.port))
        s.apache.start()
        return s
    s.start = start
    s.proxy = lambda: proxies[0]
    s.on_stop.append(lambda: [p.close() for p in proxies])
    yield from running(request, s)


def test_settled_entry_credits_the_failed_request(lossy):
    proxy = lossy.proxy()
    warm = secrets.token_bytes(100)
    lossy.check_stored(lossy.post_raw(warm), warm)
    mark = lossy.rv.audit_mark()
    proxy.blackout = 3.0
    proxy.armed.set()
    data = secrets.token_bytes(5000)
    r = requests.post(lossy.url("/auth/"), data=data, auth=("alice", "wonderland"),
                      headers={"Content-Type": "application/octet-stream"},
                      timeout=60)
    assert proxy.fired.is_set(), "the proxy never saw the store"
    assert r.status_code == 503, r.text
    ids = H.unsettled_ids(lossy.site.storage)
    assert len(ids) == 1, ids
    fid = ids[0]
    assert lossy.rv.meta(fid), "the write was applied; nothing to settle"
    time.sleep(max(0.0, proxy.refuse_until - time.monotonic()) + 0.3)
    # anonymous requests from every child, until one settles the marker
    for _ in range(20):
        d = secrets.token_bytes(100)
        lossy.check_stored(requests.post(lossy.url(), data=d, timeout=60, headers={
            "Content-Type": "application/octet-stream", "Connection": "close"}), d)
        if not H.unsettled_ids(lossy.site.storage):
            break
    assert not H.unsettled_ids(lossy.site.storage)
    assert not lossy.rv.meta(fid)
    entries = [e for e in lossy.rv.audit_since(mark)
               if e.get("event") == "upload.rejected" and e.get("id") == fid]
    assert len(entries) == 1, entries
    e = entries[0]
    # the entry speaks of the upload that failed, not of the request that
    # happened to settle it
    assert e["user"] == "alice", e
    assert e["client_ip"] == "127.0.0.1", e
    assert e["status"] == "503" and e["reason"] == "unavailable", e
    assert e["bytes"] == str(len(data)), e
    assert e["settled_by"] and e["settled_by"] != e["request_id"], e
    assert e["time"] < e["settled_time"], e
    lossy.assert_logged(e["request_id"], fid)


def _eval_calls(client):
    stats = client.info("commandstats")
    return int(stats.get("cmdstat_eval", {}).get("calls", 0))


def test_write_arriving_after_its_deadline_is_not_applied(lossy):
    """The upload's write reaches Redis only after the module gave up on it
    (held 2.5 s on the way, SecUploadRedisTimeout 2 s): the script sees its
    deadline passed and writes nothing, so a 503 never turns into metadata
    later. (A Redis stalled before the write is found by the PING that
    precedes it: test_faults.py::test_redis_debug_sleep.)"""
    proxy = lossy.proxy()
    warm = secrets.token_bytes(100)
    lossy.check_stored(lossy.post_raw(warm), warm)
    client = lossy.redis.client()
    evals_before = _eval_calls(client)
    files_before, keys_before = lossy.files(), lossy.rv.file_keys()
    proxy.blackout = 0.0
    proxy.delay = 2.5
    try:
        proxy.fired.clear()
        proxy.armed.set()
        r = lossy.post_raw(secrets.token_bytes(5000))
        assert r.status_code == 503, r.text
        assert H._wait_for(proxy.fired.is_set, 5.0), "the write was never held"
        # the held write has reached Redis and run
        assert H._wait_for(lambda: _eval_calls(client) > evals_before, 5.0), \
            "the late write never reached Redis"
    finally:
        proxy.delay = 0.0
    lossy.assert_nothing_kept(files_before, keys_before)
    assert not H.unsettled_ids(lossy.site.storage)


SETTLE_BOUND = 5.0   # seconds: docs/design.md, "Settling"


def test_settled_without_any_request(lossy):
    """Redis runs the upload's write, its reply is lost, and Redis is then
    paused (SIGSTOP) past SecUploadRedisTimeout: a 503 and a marker. Once
    Redis answers again, the settler removes the metadata and the marker
    within SETTLE_BOUND seconds, with no request arriving meanwhile."""
    proxy = lossy.proxy()
    # the pool's connections may still be those the tests before broke on
    # purpose: the first upload may find them so (a 503 is allowed then)
    warm = secrets.token_bytes(100)
    assert H._wait_for(lambda: lossy.post_raw(warm).status_code == 201, 5.0)
    lossy.check_stored(lossy.post_raw(warm), warm)
    mark = lossy.rv.audit_mark()
    pid = lossy.redis.proc.pid
    proxy.blackout = 0.5    # refused until the pause below has begun
    proxy.fired.clear()
    proxy.armed.set()

    def pause():
        if proxy.fired.wait(30):
            os.kill(pid, signal.SIGSTOP)
    pauser = threading.Thread(target=pause, daemon=True)
    pauser.start()
    try:
        r = lossy.post_raw(secrets.token_bytes(5000))
        assert proxy.fired.is_set(), "the proxy never saw the store"
        assert r.status_code == 503, r.text
        ids = H.unsettled_ids(lossy.site.storage)
        assert len(ids) == 1, ids
        fid = ids[0]
    finally:
        pauser.join(5)
        os.kill(pid, signal.SIGCONT)
    resumed = time.monotonic()
    gone = H._wait_for(lambda: not H.unsettled_ids(lossy.site.storage)
                       and not lossy.rv.meta(fid), SETTLE_BOUND + 2, 0.1)
    took = time.monotonic() - resumed
    assert gone, "marker %s or its metadata still there %.1fs after Redis " \
        "answered again" % (fid, took)
    assert took <= SETTLE_BOUND, took
    entries = [e for e in lossy.rv.audit_since(mark)
               if e.get("event") == "upload.rejected" and e.get("id") == fid]
    # a delete sent while Redis was paused (the request's own try, or the
    # settler's) runs when it resumes and adds an entry of its own: the
    # settler's speak of the failed upload
    settled = [e for e in entries if e.get("settled_by") == "settler"]
    assert settled, entries
    assert all(e["bytes"] == "5000" and e["user"] == "" for e in settled), settled
