"""Faults under load, with real processes: Redis killed or stalled while
uploads stream in, Apache restarted (graceful and hard) with uploads in
flight, clients hanging up at every stage of a multipart body or reading too
slowly, and faults injected into the module itself (fault-injection build).
Whatever happens, an upload ends as a complete 201 or leaves nothing: no
file, no temp file, no metadata. Every test that kills, pauses or restarts a
server has its own Apache and Redis."""

import json
import os
import random
import secrets
import select
import signal
import threading
import time
import warnings

import pytest
import requests

import secupload_harness as H
from faults_util import Outcome, check_batch, own_stack, rel_of

KIB = 1024
MIB = 1024 * 1024


def _assert_unavailable(resp):
    assert resp.status_code == 503, "expected 503, got %d: %s" % (
        resp.status_code, resp.text[:300])
    assert resp.headers.get("content-type", "").split(";")[0] == \
        "application/json", resp.headers
    doc = resp.json()
    assert doc.get("status") == "error" and doc.get("code") == "unavailable", \
        doc
    ra = resp.headers.get("Retry-After", "")
    assert ra.strip().isdigit(), "Retry-After: %r" % ra


def _snapshot(s):
    return s.files(), s.rv.file_keys()


# ==========================================================================
# 1. Redis killed (SIGKILL) while uploads stream in, then restarted

STREAM_THREADS = 8
STREAM_SECONDS = 6.0
STREAM_MAX = 200
KILL_AFTER = 40          # answers (or KILL_AT seconds), whichever first
KILL_AT = 2.5
OUTAGE = 1.0
ENOUGH_AFTER = 40        # 201s after the restart that end the stream


@pytest.fixture(scope="module")
def aof(module_so, request):
    # every acknowledged write is on disk before its reply: a SIGKILL and a
    # restart from the append-only file lose nothing a 201 promised
    yield from own_stack(request, "aof", redis_args=[
        "--appendonly", "yes", "--appendfsync", "always"])


def test_redis_killed_during_upload_stream(aof):
    s = aof
    warm = secrets.token_bytes(1000)
    s.check_stored(s.post_raw(warm), warm)
    apache_pid = s.apache.proc.pid
    files_before, keys_before = _snapshot(s)
    outcomes = []
    lock = threading.Lock()
    t0 = time.monotonic()
    events = {}

    def worker(i):
        rnd = random.Random(i)
        k = 0
        while time.monotonic() - t0 < STREAM_SECONDS:
            with lock:
                if len(outcomes) >= STREAM_MAX or sum(
                        o.status == 201 and o.t_start > events.get(
                            "restarted", t0 + 3600) for o in outcomes) \
                        >= ENOUGH_AFTER:
                    return
            plain = os.urandom(rnd.randint(256 * KIB, 2 * MIB))
            k += 1
            if k % 2:
                body, ctype = plain, "application/octet-stream"
            else:
                body, ctype = H.multipart([H.file_part(plain, "s%d.bin" % i)])
            o = Outcome(plain, len(body))
            o.t_start = time.monotonic()
            try:
                r = requests.post(s.url(), data=body, timeout=60,
                                  headers={"Content-Type": ctype})
                o.status, o.resp = r.status_code, r
            except requests.RequestException as e:
                o.error = e
            o.t_done = time.monotonic()
            with lock:
                outcomes.append(o)
            if o.status == 503:
                time.sleep(0.05)  # a client backing off, as Retry-After asks

    threads = [threading.Thread(target=worker, args=(i,), daemon=True)
               for i in range(STREAM_THREADS)]
    for t in threads:
        t.start()
    try:
        H._wait_for(lambda: len(outcomes) >= KILL_AFTER,
                    max(0.0, t0 + KILL_AT - time.monotonic()), 0.01)
        s.redis.kill()
        events["killed"] = time.monotonic()
        time.sleep(OUTAGE)
    finally:
        if not s.redis.running:
            s.redis.start()  # same port, same dir: the AOF is replayed
        events["restarted"] = time.monotonic()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "client threads hang"

    errors = [o for o in outcomes if o.status not in (201, 503)]
    assert not errors, "answers other than 201/503: %r" % [
        (o.status, o.error, o.resp.text[:200] if o.resp is not None else "")
        for o in errors[:5]]
    for o in outcomes:
        if o.status == 503:
            _assert_unavailable(o.resp)
    n201 = sum(o.status == 201 for o in outcomes)
    n503 = len(outcomes) - n201
    before = sum(o.status == 201 and o.t_done < events["killed"]
                 for o in outcomes)
    after = sum(o.status == 201 and o.t_start > events["restarted"]
                for o in outcomes)
    # otherwise the test did not test what it claims
    assert before and n503 and after, \
        "201 before the kill: %d, 503: %d, 201 after the restart: %d " \
        "(of %d)" % (before, n503, after, len(outcomes))
    # the storage holds exactly the 201s' files; Redis (replayed from its
    # append-only file) exactly their metadata and audit entries
    # all of Stack.check_stored for the 201s around the outage, the
    # essentials for the rest
    near = [o for o in outcomes if o.status == 201 and (
        abs(o.t_done - events["killed"]) < 0.5
        or abs(o.t_start - events["restarted"]) < 0.5)]
    check_batch(s, outcomes, files_before, keys_before,
                allow_unacknowledged=False, full=near[:10])
    # Redis is back on the same port: the same Apache stores again
    assert s.apache.running and s.apache.proc.pid == apache_pid
    for i in range(4):
        d = secrets.token_bytes(3000 + i)
        s.check_stored(s.post_raw(d), d)


# ==========================================================================
# 2. Redis slow: paused clients, a sleeping server

SLOW_TIMEOUT_MS = 500


@pytest.fixture(scope="module")
def slow(module_so, request):
    yield from own_stack(request, "slow", redis_timeout=SLOW_TIMEOUT_MS,
                         redis_args=["--enable-debug-command", "yes"])


def _eval_calls(client):
    stats = client.info("commandstats")
    return int(stats.get("cmdstat_eval", {}).get("calls", 0))


def _stall_case(s, stall, stall_s=3.0):
    """stall() makes Redis unresponsive for stall_s seconds from now; an
    upload meanwhile must get 503 within the timeout, and nothing may
    appear once Redis runs again. Returns (seconds taken, EVAL ran late)."""
    for _ in range(4):  # pooled connections in the children
        d = secrets.token_bytes(100)
        s.check_stored(s.post_raw(d), d)
    files_before, keys_before = _snapshot(s)
    evals_before = _eval_calls(s.redis.client())
    started = time.monotonic()
    stall()
    data = secrets.token_bytes(4 * KIB)
    t0 = time.monotonic()
    resp = s.post_raw(data, timeout=30)
    took = time.monotonic() - t0
    _assert_unavailable(resp)
    assert took < 2.0, "the 503 took %.2fs (SecUploadRedisTimeout %dms)" % (
        took, SLOW_TIMEOUT_MS)
    # Redis runs whatever it had queued once the stall is over
    time.sleep(max(0.0, started + stall_s + 0.5 - time.monotonic()))
    client = s.redis.client()
    assert client.ping()
    late = H._wait_for(lambda: s.rv.file_keys() != keys_before
                       or s.files() != files_before, 1.0)
    assert not late, "written after the 503: files %r, metadata %r" % (
        sorted(set(s.files()) - set(files_before)),
        sorted(s.rv.file_keys() - keys_before))
    ran_late = _eval_calls(client) > evals_before
    # and Redis works again for the same Apache
    for i in range(4):
        d = secrets.token_bytes(2000 + i)
        s.check_stored(s.post_raw(d), d)
    return took, ran_late


def test_redis_client_pause(slow):
    def pause():
        assert slow.redis.client().execute_command(
            "CLIENT", "PAUSE", "3000", "ALL")
    _stall_case(slow, pause)


def test_redis_debug_sleep(slow):
    done = threading.Event()

    def sleeper():
        c = H.redis.Redis(host="127.0.0.1", port=slow.redis.port,
                          socket_timeout=10)
        try:
            c.execute_command("DEBUG", "SLEEP", "3")
        finally:
            done.set()

    def stall():
        threading.Thread(target=sleeper, daemon=True).start()
        # the sleep has begun once a PING goes unanswered
        probe = H.redis.Redis(host="127.0.0.1", port=slow.redis.port,
                              socket_timeout=0.2)

        def asleep():
            try:
                probe.ping()
                return False
            except H.redis.TimeoutError:
                return True
        assert H._wait_for(asleep, 2.0, 0.02), "DEBUG SLEEP did not start"
    took, ran_late = _stall_case(slow, stall)
    assert done.wait(5)
    # the PING that precedes the write found the server asleep, so the write
    # was never sent (a write that does arrive late is refused by its
    # deadline: test_settle.py::test_write_arriving_after_its_deadline_is_not_applied)
    assert not ran_late, "the upload's write was sent to a stalled Redis"


# ==========================================================================
# 3. Apache restarted (graceful, hard) while uploads stream in

INFLIGHT = 16
CHUNK = 64 * KIB


@pytest.fixture(scope="module")
def restartable(module_so, request):
    yield from own_stack(request, "restart")


def _slow_upload(s, o, body, head, chunk_sleep, progress):
    """Stream body in CHUNK pieces with pauses; o records how it ended."""
    try:
        c = H.RawConn(s.apache.port, timeout=30)
    except OSError as e:
        o.error = e
        return
    try:
        c.send(head)
        for off in range(0, len(body), CHUNK):
            c.send(body[off:off + CHUNK])
            o.sent = off + len(body[off:off + CHUNK])
            progress()
            time.sleep(chunk_sleep)
        o.resp = c.read_response()
        o.status = o.resp.status
    except (OSError, EOFError, AssertionError) as e:
        o.error = e
    finally:
        o.t_done = time.monotonic()
        c.close()


@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGHUP],
                         ids=["graceful", "restart"])
def test_restart_with_uploads_in_flight(restartable, sig):
    s = restartable
    assert s.apache.wait_serving(30), "Apache is not serving"
    files_before, keys_before = _snapshot(s)
    rnd = random.Random(int(sig))
    jobs = []
    for i in range(INFLIGHT):
        plain = os.urandom(rnd.randint(4 * MIB, 8 * MIB))
        if i % 2:
            body, ctype = H.multipart([H.file_part(plain, "f%d.bin" % i)])
        else:
            body, ctype = plain, "application/octet-stream"
        head = H.request_head("POST", "/api/upload/", [
            ("Content-Type", ctype), ("Content-Length", str(len(body))),
            ("Connection", "close")])
        jobs.append((Outcome(plain, len(body)), body, head))
    # about 1.5 s per upload: 64 KiB pieces, a pause after each
    sleeps = [1.5 / (len(b) / CHUNK) for _, b, _ in jobs]
    quarter = threading.Barrier(INFLIGHT + 1, timeout=60)

    def worker(i):
        o, body, head = jobs[i]
        told = []

        def progress():
            if not told and o.sent >= len(body) // 4:
                told.append(1)
                try:
                    quarter.wait()
                except threading.BrokenBarrierError:
                    pass
        _slow_upload(s, o, body, head, sleeps[i], progress)
        if not told:
            quarter.abort()  # failed before a quarter: do not hold the rest

    threads = [threading.Thread(target=worker, args=(i,), daemon=True)
               for i in range(INFLIGHT)]
    for t in threads:
        t.start()
    try:
        quarter.wait()
        all_started = True
    except threading.BrokenBarrierError:
        all_started = False
    s.apache.signal(sig)
    for t in threads:
        t.join(90)
    assert not any(t.is_alive() for t in threads), "client threads hang"
    outcomes = [o for o, _, _ in jobs]
    assert all_started, "not every upload got under way before the " \
        "signal: %r" % outcomes
    # the parent is alive and serving again (new children after a restart)
    assert s.apache.wait_serving(30), "Apache does not serve after %s: %s" \
        % (sig.name, s.apache.log_text()[-3000:])
    for o in outcomes:
        if o.status is not None and o.status != 201:
            # an answer other than 201 must be a proper error
            body = json.loads(o.resp.body.decode())
            assert body.get("status") == "error", body
    unacked = check_batch(s, outcomes, files_before, keys_before)
    n201 = sum(o.status == 201 for o in outcomes)
    if sig == signal.SIGUSR1:
        # a graceful restart lets requests in progress finish
        assert n201 == INFLIGHT, "graceful restart broke uploads: %r" % [
            o for o in outcomes if o.status != 201]
    # and the server takes new uploads
    d = secrets.token_bytes(10000)
    s.check_stored(s.post_raw(d), d)
    if unacked:
        warnings.warn("%d uploads stored whose answer was lost" % len(unacked))


# ==========================================================================
# 4. The client hangs up at every stage of a multipart body

def _hangup_body():
    data = os.urandom(256 * KIB)
    boundary = "----suHang" + secrets.token_hex(8)
    body, ctype = H.multipart([H.field_part("note", "before the file"),
                               H.file_part(data, "hang.bin")],
                              boundary=boundary)
    close = b"\r\n--" + boundary.encode() + b"--\r\n"
    disp = body.index(b'filename="hang.bin"')
    start = body.index(b"\r\n\r\n", disp) + 4
    cuts = {
        "after_headers": 0,
        "in_part_headers": disp + 5,
        "in_file_data": start + len(data) // 2,
        "before_final_dashes": len(body) - len(b"--\r\n"),
        "before_close_delimiter": len(body) - len(close),
        "after_body": len(body),
    }
    assert body[start:start + len(data)] == data
    return data, body, ctype, cuts


HANGUPS = [(stage, "length") for stage in (
    "after_headers", "in_part_headers", "in_file_data", "before_final_dashes",
    "before_close_delimiter", "after_body")] + [
    ("in_file_data", "chunked"), ("before_close_delimiter", "chunked")]


@pytest.mark.parametrize("stage,framing", HANGUPS,
                         ids=["%s-%s" % h for h in HANGUPS])
def test_client_hangs_up(fresh, stage, framing):
    s = fresh
    data, body, ctype, cuts = _hangup_body()
    sent = body[:cuts[stage]]
    headers = [("Content-Type", ctype)]
    if framing == "chunked":
        headers.append(("Transfer-Encoding", "chunked"))
        # whole chunks, never the last one
        wire = H.chunked(sent, [16 * KIB])[:-len(b"0\r\n\r\n")] if sent \
            else b""
        if stage == "after_body":
            wire = H.chunked(sent, [16 * KIB])
    else:
        headers.append(("Content-Length", str(len(body))))
        wire = sent
    files_before, keys_before = _snapshot(s)
    rv = s.rv
    mark = rv.audit_mark()
    c = H.RawConn(s.apache.port)
    c.send(H.request_head("POST", "/api/upload/", headers))
    c.send(wire)
    if stage in ("in_file_data", "before_final_dashes",
                 "before_close_delimiter"):
        # the file is being written: the hang-up comes mid-upload
        assert H._wait_for(lambda: s.files() != files_before, 5.0), \
            "no temp file appeared"
    c.close()

    def audit():
        return [e for e in rv.audit_since(mark)
                if e.get("event") in ("upload.rejected", "upload.stored")]
    entries = H._wait_for(audit, 5.0)
    H._wait_for(lambda: not H.stray_files(s.site.storage), 5.0)
    time.sleep(0.2)
    assert not H.stray_files(s.site.storage), H.stray_files(s.site.storage)
    if stage == "after_body" and entries and \
            entries[-1].get("event") == "upload.stored":
        # the whole body arrived: stored, and then completely
        fid = entries[-1]["id"]
        assert set(s.files()) == set(files_before) | {rel_of(fid)}
        plain, _ = H.decrypt_file(os.path.join(s.site.storage, rel_of(fid)),
                                  s.keks)
        assert plain == data
        meta = s.rv.meta(fid)
        assert meta.get("size") == str(len(data)) and \
            meta.get("name") == "hang.bin", meta
        assert s.rv.file_keys() == set(keys_before) | {
            s.prefix + "file:" + fid}
    else:
        assert s.files() == files_before, "left in storage: %r" % sorted(
            set(s.files()) - set(files_before))
        assert s.rv.file_keys() == keys_before
        assert entries, "no upload.rejected audit entry for the hang-up"
        assert len(entries) == 1, entries
        e = entries[0]
        assert e.get("event") == "upload.rejected", e
        assert e.get("reason") == "aborted", e
        assert e.get("client_ip") == "127.0.0.1" and e.get("request_id"), e
        s.assert_logged(e["request_id"], "aborted")
    # Apache still serves
    d = secrets.token_bytes(2000)
    s.check_stored(s.post_raw(d), d)


# ==========================================================================
# 5. A client dribbling its body is cut off by mod_reqtimeout

@pytest.fixture(scope="module")
def reqtimeout(module_so, request):
    yield from own_stack(request, "slowclient", extra="""
LoadModule reqtimeout_module %s/mod_reqtimeout.so
RequestReadTimeout header=2 body=2,MinRate=1000
""" % H.MODULE_DIR)


def _dribble(port, head, rate_bytes, limit_s, result):
    """Send head, then rate_bytes per second until the server answers or
    closes. result: 'cut_after' (s), 'answer' (bytes) and 'sent'."""
    c = H.RawConn(port, timeout=limit_s + 5)
    t0 = time.monotonic()
    result["sent"] = 0
    try:
        c.send(head)
        while time.monotonic() - t0 < limit_s:
            if not c.try_send(b"x" * rate_bytes):
                break
            result["sent"] += rate_bytes
            r, _, _ = select.select([c.sock], [], [], 1.0)
            if r:
                try:
                    got = c.sock.recv(65536)
                except ConnectionResetError:
                    got = b""
                result["answer"] = got
                break
    finally:
        result["cut_after"] = time.monotonic() - t0
        c.close()


def test_slow_client_cut_off(reqtimeout):
    s = reqtimeout
    warm = secrets.token_bytes(1000)
    s.check_stored(s.post_raw(warm), warm)
    files_before, keys_before = _snapshot(s)
    mark = s.rv.audit_mark()
    declared = 200000
    head = H.request_head("POST", "/api/upload/", [
        ("Content-Type", "application/octet-stream"),
        ("Content-Disposition", 'attachment; filename="slow.bin"'),
        ("Content-Length", str(declared))])
    result = {}
    t = threading.Thread(target=_dribble, args=(s.apache.port, head, 10, 15.0,
                                                result), daemon=True)
    t.start()
    # the slow upload is under way (its temp file exists) ...
    assert H._wait_for(lambda: s.files() != files_before, 5.0), \
        "the slow upload never started"
    # ... and others are served meanwhile, promptly
    served = []
    while t.is_alive() and len(served) < 20:
        d = secrets.token_bytes(50000)
        t0 = time.monotonic()
        r = s.post_raw(d, timeout=10)
        took = time.monotonic() - t0
        assert r.status_code == 201 and took < 2.0, (r.status_code, took)
        served.append((r, d))
        time.sleep(0.2)
    t.join(20)
    assert not t.is_alive()
    assert served, "no other upload ran while the slow client dribbled"
    # cut off after the 2 s body timeout (plus a little)
    assert result["cut_after"] < 6.0, "the slow client was not cut off: %r" \
        % result
    assert result["sent"] < declared
    answer = result.get("answer", b"")
    if answer:
        # whatever is said to a client still listening is an error answer
        # as docs/api.md has them: a 4xx/5xx status with the JSON body
        head, _, body = answer.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        assert status >= 400, answer[:300]
        ctype = [ln.split(b":", 1)[1].strip().lower()
                 for ln in head.split(b"\r\n")[1:]
                 if ln.lower().startswith(b"content-type:")]
        assert ctype and ctype[0].startswith(b"application/json") \
            and json.loads(body.decode()).get("status") == "error", \
            "the cut-off client got %d without the JSON error body: %r" % (
                status, answer[:300])
    for r, d in served:
        s.check_stored(r, d)
    ok_files = set(files_before) | {rel_of(r.json()["id"]) for r, _ in served}
    H._wait_for(lambda: set(s.files()) == ok_files, 5.0)
    assert set(s.files()) == ok_files, "left in storage: %r" % sorted(
        set(s.files()) - ok_files)
    assert s.rv.file_keys() == set(keys_before) | {
        s.prefix + "file:" + r.json()["id"] for r, _ in served}
    rejected = H._wait_for(lambda: [e for e in s.rv.audit_since(mark)
                                    if e.get("event") == "upload.rejected"],
                           3.0)
    assert len(rejected) == 1, rejected
    s.assert_logged(rejected[0]["request_id"], rejected[0]["reason"])


# ==========================================================================
# 6. Faults injected into the module (a build with --enable-fault-injection)

def _need_fault_build():
    if os.environ.get("SECUPLOAD_FAULT_BUILD") != "1":
        pytest.skip("needs the module built with --enable-fault-injection "
                    "and SECUPLOAD_FAULT_BUILD=1 (scripts/test does this for "
                    "the sanitizer build)")


@pytest.fixture(scope="module")
def faulty(module_so, request):
    _need_fault_build()
    yield from own_stack(request, "faulty",
                         apache_env={"SECUPLOAD_FAULTS": "rand"})


def _log_lines(s, request_id):
    return [ln for ln in s.apache.log_text().splitlines()
            if "[%s]" % request_id in ln]


def test_fault_rand_is_500(faulty):
    s = faulty
    if s.apache.extra_env.get("SECUPLOAD_FAULTS") != "rand":
        s.restart_apache({"SECUPLOAD_FAULTS": "rand"})
    for send in (lambda: s.post_raw(secrets.token_bytes(5000)),
                 lambda: s.post_multipart(
                     [H.file_part(secrets.token_bytes(5000), "r.bin")])[0]):
        resp, doc = s.expect_error(send, 500, "internal_error")
        assert doc["message"] == "Internal error.", doc
        e = [x for x in s.rv.audit_all()
             if x.get("event") == "upload.rejected"][-1]
        # the admin learns why; the client does not
        why = [ln for ln in _log_lines(s, e["request_id"])
               if "internal_error" in ln]
        assert why and "random" in why[-1].lower(), \
            "no log line says the random generator failed: %r" % why
        assert "random" not in resp.text.lower()


def test_fault_fsync_is_500_once(faulty):
    s = faulty
    s.restart_apache({"SECUPLOAD_FAULTS": "fsync"})
    resp, doc = s.expect_error(lambda: s.post_raw(secrets.token_bytes(300000)),
                               500, "internal_error")
    e = [x for x in s.rv.audit_all()
         if x.get("event") == "upload.rejected"][-1]
    lines = _log_lines(s, e["request_id"])
    fsyncs = [ln for ln in lines if "fsync" in ln]
    # a failed fsync is final (the page cache may have dropped the data):
    # never retried, reported once
    assert len(fsyncs) == 1, "fsync failures logged for the request: %r" \
        % lines
    # SecUploadSync Off: no fsync, no fault
    d = secrets.token_bytes(300000)
    s.check_stored(s.post_raw(d, path="/nosync/"), d)
