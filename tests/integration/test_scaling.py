"""Beyond one machine: two Apache nodes on one storage directory behind
mod_proxy_balancer, Redis with a replica and three sentinels (all real
processes on loopback ports). Any node serves any file; with
SecUploadRedisWaitReplicas an upload is acknowledged only once a replica
has its metadata, so that every 201 survives the SIGKILL of the master and
the failover that follows; a failed upload leaves nothing."""

import concurrent.futures as cf
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import pytest
import requests

import secupload_harness as H
from secupload_stack import Cluster, RedisHA, report_shutdown

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "soak"))
from exec_reply_lost import DropAfterExec  # noqa: E402

# the settling bound (docs/design.md, "Settling"), and how long uploads may
# fail after the master is killed: Sentinel's down-after-milliseconds
# (1 s here), its vote and promotion, then SecUploadRedisTimeout (2 s) for
# the nodes to find the new master
SETTLE_BOUND = 5.0
RECOVERY_BOUND = 8.0


@pytest.fixture(scope="module")
def ha(module_so, request):
    workdir = tempfile.mkdtemp(prefix="secupload-ha-")
    redis_ha = RedisHA(workdir)
    cluster = None
    try:
        redis_ha.start()
        cluster = Cluster("scale", [redis_ha.sentinel_lines()],
                          wait_replicas="1 500")
        cluster.redis = redis_ha
        cluster.start()
        yield cluster
    finally:
        problems = cluster.stop() if cluster else []
        redis_ha.stop()
        if not problems:
            shutil.rmtree(workdir, ignore_errors=True)
        report_shutdown(request, problems)


@pytest.fixture
def pair(module_so, request):
    """Two nodes on one Redis; node A reaches it through a proxy that can
    lose the reply of an upload's write (tests/soak/exec_reply_lost.py)."""
    workdir = tempfile.mkdtemp(prefix="secupload-pair-")
    redis_server = H.RedisServer(workdir)
    proxy_port = H.free_port()
    cluster, proxy = None, None
    try:
        redis_server.start()
        proxy = DropAfterExec(proxy_port, redis_server.port)
        cluster = Cluster("pair", [
            ["SecUploadRedisServer 127.0.0.1:%d" % proxy_port],
            ["SecUploadRedisServer 127.0.0.1:%d" % redis_server.port]])
        cluster.redis_server, cluster.proxy = redis_server, proxy
        cluster.start()
        yield cluster
    finally:
        problems = cluster.stop() if cluster else []
        if proxy:
            proxy.close()
        redis_server.stop()
        if not problems:
            shutil.rmtree(workdir, ignore_errors=True)
        report_shutdown(request, problems)


def test_unknown_outcome_settled_by_the_other_node(pair):
    """Node A's write is applied but its reply lost, and A cannot reach
    Redis again in time: a 503 and a marker in the shared storage
    directory. A is then stopped; node B's settler removes the metadata and
    the marker within the settling bound."""
    rv = H.RedisView(pair.redis_server.client(), pair.prefix)
    r, _ = upload(pair, node=0)
    assert r.status_code == 201, r.text
    mark = rv.audit_mark()
    pair.proxy.blackout = 4.0
    pair.proxy.armed.set()
    r, _ = upload(pair, node=0, size=5000)
    assert pair.proxy.fired.is_set(), "the proxy never saw the store"
    assert r.status_code == 503, r.text
    ids = H.unsettled_ids(pair.site.storage)
    assert len(ids) == 1, ids
    fid = ids[0]
    pair.nodes[0].stop()
    t0 = time.monotonic()
    gone = H._wait_for(lambda: not H.unsettled_ids(pair.site.storage)
                       and not rv.meta(fid), SETTLE_BOUND + 2, 0.1)
    took = time.monotonic() - t0
    assert gone and took <= SETTLE_BOUND, (gone, took)
    settled = [e for e in rv.audit_since(mark)
               if e.get("event") == "upload.rejected" and e.get("id") == fid
               and e.get("settled_by") == "settler"]
    assert settled and settled[0]["bytes"] == "5000", settled
    assert "settled the metadata of failed upload %s" % fid \
        in pair.nodes[1].log_text()
    assert not pair.files() or not H.stray_files(pair.site.storage)


def rview(ha):
    return H.RedisView(ha.redis.current().client(), ha.prefix)


def upload(ha, node=None, size=None):
    plain = secrets.token_bytes(size or 64 + secrets.randbelow(448))
    r = ha.post(plain, node)
    return r, plain


def test_upload_on_one_node_served_by_the_other(ha):
    """Upload through A; GET, /meta and DELETE through B."""
    r, plain = upload(ha, node=0)
    assert r.status_code == 201, r.text
    fid = r.json()["id"]
    g = requests.get(ha.url("/api/files/" + fid, 1), timeout=10)
    assert g.status_code == 200 and g.content == plain
    m = requests.get(ha.url("/api/files/%s/meta" % fid, 1), timeout=10)
    assert m.status_code == 200 and m.json()["size"] == len(plain), m.text
    d = requests.delete(ha.url("/api/files/" + fid, 1), timeout=10)
    assert d.status_code == 204, d.text
    assert fid not in ha.stored_ids()
    assert not rview(ha).meta(fid)
    g = requests.get(ha.url("/api/files/" + fid, 0), timeout=10)
    assert g.status_code == 404
    # the storage lock is shared between the nodes: the second one started
    # left the directory's temp files alone
    assert "SU00242" in ha.nodes[1].log_text()


def test_thousand_uploads_over_two_nodes(ha):
    """1,000 small uploads spread over both nodes (through the balancer and
    straight), each readable from either node afterwards."""
    before = ha.stored_ids()

    def one(i):
        r, plain = upload(ha, node=(None, 0, 1)[i % 3], size=64 + i % 200)
        assert r.status_code == 201, r.text
        return r.json()["id"], plain, i

    t0 = time.monotonic()
    with cf.ThreadPoolExecutor(8) as pool:
        done = list(pool.map(one, range(1000)))
    took = time.monotonic() - t0
    ids = {fid for fid, _, _ in done}
    assert len(ids) == 1000
    assert ha.stored_ids() - before == ids

    def read(item):
        fid, plain, i = item
        g = requests.get(ha.url("/api/files/" + fid, i % 2), timeout=10)
        assert g.status_code == 200 and g.content == plain, (fid, g.status_code)

    with cf.ThreadPoolExecutor(8) as pool:
        list(pool.map(read, done))
    rv = rview(ha)
    assert all(rv.meta(fid) for fid in ids)
    print("1000 uploads over two nodes in %.1f s" % took)
    # secupload fsck finds the master through the sentinels too
    cli = os.environ.get("SECUPLOAD_CLI") or os.path.join(H.REPO, "secupload")
    p = subprocess.run([cli, "fsck", "--storage", ha.site.storage, "--prefix",
                        ha.prefix, "--sentinel", "sumaster@127.0.0.1:1," + ",".join(
                            "127.0.0.1:%d" % s.port for s in ha.redis.sentinels)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    out = p.stdout.decode()
    assert p.returncode == 0, out
    assert "summary:" in out and "orphan=0" in out and "missing=0" in out, out


def test_too_few_replicas_takes_the_upload_back(ha):
    """The replicas stop answering (SIGSTOP): the metadata reaches no
    replica within SecUploadRedisWaitReplicas' 500 ms, so the upload is
    taken back: 503 with Retry-After, no file, no metadata, no marker, and
    an upload.rejected entry."""
    rv = rview(ha)
    mark = rv.audit_mark()
    files, keys = ha.files(), rv.file_keys()
    replicas = [s for p, s in ha.redis.servers.items()
                if p != ha.redis.master_port()]
    for s in replicas:
        os.kill(s.proc.pid, signal.SIGSTOP)
    try:
        r, _ = upload(ha, node=1)
    finally:
        for s in replicas:
            os.kill(s.proc.pid, signal.SIGCONT)
    assert r.status_code == 503, r.text
    assert r.headers.get("Retry-After"), r.headers
    assert r.json()["code"] == "unavailable"
    assert ha.files() == files
    assert rv.file_keys() == keys
    assert not H.unsettled_ids(ha.site.storage)
    rejected = [e for e in rv.audit_since(mark)
                if e.get("event") == "upload.rejected"]
    assert len(rejected) == 1, rejected
    assert rejected[0]["status"] == "503" and rejected[0]["id"], rejected
    assert "0 of 1 Redis replicas" in ha.nodes[1].log_text()
    # and the next upload, with the replica back, is acknowledged
    assert H._wait_for(lambda: upload(ha, node=1)[0].status_code == 201, 5.0)


def test_master_killed_under_load(ha):
    """A steady stream of uploads through the balancer while the master is
    SIGKILLed and Sentinel promotes the replica. Every 201 has its metadata
    and its upload.stored entry on the new master and its file decrypts;
    the failed uploads left nothing (no file, marker, temp file or
    metadata) once the settling bound has passed; uploads succeed again
    within RECOVERY_BOUND seconds of the kill."""
    old = ha.redis.master_port()
    ids_before = ha.stored_ids()
    keys_before = rview(ha).file_keys()
    results, lock, stop = [], threading.Lock(), threading.Event()

    def worker():
        while not stop.is_set():
            t = time.monotonic()
            try:
                r, plain = upload(ha)
                out = (t, time.monotonic(), r.status_code, plain,
                       r.json().get("id") if r.status_code == 201 else None,
                       r.headers.get("Retry-After"))
            except requests.RequestException as e:
                out = (t, time.monotonic(), repr(e), None, None, None)
            with lock:
                results.append(out)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for th in threads:
        th.start()
    time.sleep(2.0)
    killed = time.monotonic()
    os.kill(ha.redis.servers[old].proc.pid, signal.SIGKILL)
    promoted = H._wait_for(lambda: ha.redis.master_port() not in (old, None),
                           20.0, 0.1)
    new = ha.redis.master_port()
    promoted_after = time.monotonic() - killed
    time.sleep(max(0.0, killed + RECOVERY_BOUND + 3.0 - time.monotonic()))
    stop.set()
    for th in threads:
        th.join(30)
    assert promoted, "Sentinel did not promote the replica"

    ok = [x for x in results if x[2] == 201]
    failed = [x for x in results if x[2] != 201]
    assert all(x[2] == 503 and x[5] for x in failed), \
        {str(x[2]) for x in failed}
    # every 201: metadata and audit entry on the new master, the file decrypts
    rv = H.RedisView(ha.redis.servers[new].client(), ha.prefix)
    stored = {e.get("id") for e in rv.audit_all()
              if e.get("event") == "upload.stored"}
    for _, _, _, plain, fid, _ in ok:
        meta = rv.meta(fid)
        assert meta and meta["size"] == str(len(plain)), fid
        assert fid in stored, fid
        assert ha.decrypts(fid, plain), fid
    # the failed ones left nothing, once settled
    ok_ids = {x[4] for x in ok}

    def clean():
        return (not H.unsettled_ids(ha.site.storage)
                and not H.stray_files(ha.site.storage)
                and ha.stored_ids() - ids_before == ok_ids
                and rv.file_keys() - keys_before
                == {ha.prefix + "file:" + i for i in ok_ids})
    assert H._wait_for(clean, SETTLE_BOUND, 0.2), (
        H.unsettled_ids(ha.site.storage), H.stray_files(ha.site.storage),
        len(ha.stored_ids() - ids_before), len(ok_ids))
    # back within the bound: every upload started after it succeeded
    late = [x for x in results if x[0] > killed + RECOVERY_BOUND]
    assert late and all(x[2] == 201 for x in late), \
        [x[2] for x in late if x[2] != 201]
    after = [x for x in ok if x[0] > killed]
    back = after[0][1] - killed if after else None
    last_fail = max((x[1] for x in failed), default=killed) - killed
    print("\nfailover: %d uploads, %d acknowledged, %d refused with 503; "
          "replica promoted %.1f s after the kill; first 201 after the kill "
          "%.1f s; last failure %.1f s" % (len(results), len(ok), len(failed),
                                           promoted_after, back or -1,
                                           last_fail))
    assert back is not None and back < RECOVERY_BOUND
