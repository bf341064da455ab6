#!/usr/bin/python3
"""Soak test: mixed concurrent load against a private Apache (mpm_event) with
the module and its Redis, with a Redis restart and an Apache graceful restart
in the middle, then a full reconciliation of what the clients were told
against what is on disk and in Redis.

    /usr/bin/python3 tests/soak/run.py --seconds 60

Load (default 8 client threads, every request on a fresh connection):
  uploads    raw (Content-Length), raw chunked and multipart; sizes 70% under
             64 KiB, 25% under 4 MiB, 5% up to 64 MiB
  downloads  GET /api/files/{id} (sometimes /meta) of files stored earlier
  deletes    DELETE /api/files/{id}
  aborts     a raw socket that closes (FIN or RST) in the middle of the body
  bad        malformed multipart, digest mismatches, over-size, wrong method

Events: at 30% of the run Redis is stopped by its PID and started again on
the same port 3 s later (appendonly, so its data survives); at 40% Apache gets
SIGUSR1 (graceful restart).

The ledger keeps, per 201, the sha256 and size of what was sent (never the
bytes). At the end:
  - every live ledger file decrypts (independent decryptor) to exactly the
    bytes sent, its metadata hash matches and an upload.stored audit entry
    exists;
  - every file the soak deleted (204) has neither file nor metadata, and a
    file.deleted audit entry exists;
  - the storage dir holds exactly the live files (no temp files, nothing
    from a non-201) and Redis exactly their metadata;
  - every 200 download matched the sha256 of the upload;
  - no status other than the expected ones; a 503 only for a request that
    overlapped the Redis outage (begun at most 0.5 s after Redis was back);
  - an upload.stored audit entry for an upload no client got a 201 for
    (its metadata write ran, the answer was lost) is followed by the
    upload.rejected entry that takes the metadata back;
  - no error-log line at crit or worse, no crashed child;
  - Apache's memory: RSS summed over the children, sampled every second.
    Growth bound (--rss-bound-mib, default 32 MiB) on two comparisons:
      A: max of the last third of the run vs max of the first third;
      B: max of the last 20% vs max of the 45%..65% window (the children
         started by the graceful restart at 40%, so growth within one
         generation of children is seen over a third of the run).
Exit status: 0 clean, 1 any violation, 2 the servers could not be started.

Disk: the live files stay until the end (35 to 70 MiB per second of load
on a 2-core machine: 20 GiB after 300 s), in a server root under $TMPDIR
that is removed afterwards unless a violation kept it for inspection.
"""

import argparse
import collections
import hashlib
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

import requests  # noqa: E402

import secupload_harness as H  # noqa: E402
from secupload_stack import Stack  # noqa: E402

KIB = 1024
MIB = 1024 * 1024

OP_WEIGHTS = [("upload", 50), ("download", 22), ("delete", 10),
              ("abort", 7), ("bad", 11)]
REDIS_AT = 0.30         # fraction of the run
REDIS_DOWN_S = 3.0
GRACEFUL_AT = 0.40
# a request begun later than this after Redis is back must not get a 503
OUTAGE_GRACE_S = 0.5
CONNECT_TIMEOUT = 10
READ_TIMEOUT = 300


# --------------------------------------------------------------------------
# Redis with an append-only file, so that a restart keeps the data


def aof_redis(workdir, port):
    """A redis-server that keeps an append-only file (so a restart in the
    middle of the run finds its data again)."""
    return H.RedisServer(workdir, port=port, start_timeout=20.0,
                         extra_args=["--appendonly", "yes",
                                     "--appendfsync", "everysec"])


# --------------------------------------------------------------------------
# Shared state


class Entry:
    __slots__ = ("sha", "size", "mode", "t")

    def __init__(self, sha, size, mode, t):
        self.sha = sha
        self.size = size
        self.mode = mode
        self.t = t


class Ledger:
    """What the clients were told. Readers and deleters never share an id,
    so a 404 on a live id is always a violation."""

    def __init__(self):
        self.lock = threading.Lock()
        self.live = {}        # id -> Entry
        self.ids = []         # live ids not being deleted (random choice)
        self.pos = {}         # id -> index in ids
        self.readers = collections.Counter()
        self.deleted = {}     # id -> Entry (204 received)
        self.limbo = {}       # id -> Entry (delete outcome unknown)
        self.unknown_uploads = collections.Counter()  # sha -> count

    def _push(self, fid):
        self.pos[fid] = len(self.ids)
        self.ids.append(fid)

    def _pop(self, fid):
        i = self.pos.pop(fid)
        last = self.ids.pop()
        if last != fid:
            self.ids[i] = last
            self.pos[last] = i

    def add(self, fid, entry):
        with self.lock:
            if fid in self.live or fid in self.deleted or fid in self.limbo:
                return False
            self.live[fid] = entry
            self._push(fid)
            return True

    def pick_read(self, rng):
        with self.lock:
            if not self.ids:
                return None, None
            fid = self.ids[rng.randrange(len(self.ids))]
            self.readers[fid] += 1
            return fid, self.live[fid]

    def done_read(self, fid):
        with self.lock:
            self.readers[fid] -= 1
            if self.readers[fid] <= 0:
                del self.readers[fid]

    def pick_delete(self, rng):
        with self.lock:
            for _ in range(8):
                if not self.ids:
                    return None, None
                fid = self.ids[rng.randrange(len(self.ids))]
                if not self.readers.get(fid):
                    self._pop(fid)
                    return fid, self.live[fid]
            return None, None

    def done_delete(self, fid, outcome):
        """outcome: deleted | kept | unknown"""
        with self.lock:
            entry = self.live[fid]
            if outcome == "kept":
                self._push(fid)
                return
            del self.live[fid]
            if outcome == "deleted":
                self.deleted[fid] = entry
            else:
                self.limbo[fid] = entry

    def unknown_upload(self, sha):
        with self.lock:
            self.unknown_uploads[sha] += 1


class Ctx:
    def __init__(self, args, stack):
        self.args = args
        self.stack = stack
        self.port = stack.apache.port
        self.base = stack.apache.base
        self.ledger = Ledger()
        self.lock = threading.Lock()
        self.counts = collections.Counter()
        self.latency = collections.defaultdict(list)
        self.bytes_up = 0
        self.bytes_down = 0
        self.violations = []
        self.nviolations = 0
        self.t0 = time.monotonic()
        self.deadline = self.t0 + args.seconds
        self.stop = threading.Event()
        self.outage = None        # (start, end) of the Redis restart
        self.outage_start = None
        self.graceful_at = None
        self.events = []
        self.rss = []             # (t, children_kib, nchildren, parent_kib)

    def now(self):
        return time.monotonic() - self.t0

    def count(self, op, outcome, t_start=None, nbytes_up=0, nbytes_down=0):
        with self.lock:
            self.counts[(op, outcome)] += 1
            self.bytes_up += nbytes_up
            self.bytes_down += nbytes_down
            if t_start is not None:
                self.latency[op].append(time.monotonic() - t_start)

    def violation(self, msg):
        with self.lock:
            self.nviolations += 1
            if len(self.violations) < 200:
                self.violations.append("[%7.2fs] %s" % (self.now(), msg))

    def event(self, msg):
        with self.lock:
            self.events.append("[%7.2fs] %s" % (self.now(), msg))
        print("  [%7.2fs] %s" % (self.now(), msg), flush=True)

    def in_outage(self, t_start, t_end):
        """Did [t_start, t_end] (monotonic) overlap the Redis restart?"""
        with self.lock:
            start = self.outage_start
            end = self.outage[1] if self.outage else None
        if start is None:
            return False
        if end is None:
            return t_end >= start - 0.5
        return t_end >= start - 0.5 and t_start <= end + OUTAGE_GRACE_S


# --------------------------------------------------------------------------
# Requests


def _headers(extra=None):
    h = {"Connection": "close"}
    h.update(extra or {})
    return h


def _timeout():
    return (CONNECT_TIMEOUT, READ_TIMEOUT)


def _json(resp):
    try:
        return resp.json()
    except ValueError:
        return None


def _error_ok(resp, code):
    doc = _json(resp)
    return (resp.headers.get("content-type", "").split(";")[0].strip()
            == "application/json" and isinstance(doc, dict)
            and doc.get("status") == "error" and doc.get("code") == code)


def _expected_503(ctx, resp, t_start):
    """A 503 is fine only around the Redis restart, and must be the JSON
    error with Retry-After."""
    if not ctx.in_outage(t_start, time.monotonic()):
        return "503 outside the Redis outage"
    if not _error_ok(resp, "unavailable"):
        return "503 without the unavailable JSON: %r" % resp.text[:200]
    ra = resp.headers.get("Retry-After", "")
    if not ra.strip().isdigit():
        return "503 without a numeric Retry-After (%r)" % ra
    return None


def pick_size(rng):
    r = rng.random()
    if r < 0.70:
        edge = rng.random()
        if edge < 0.05:
            return 0
        if edge < 0.15:
            return rng.choice([1, 15, 16, 17, 4095, 4096, 4097, 8191, 8192,
                               65535])
        return rng.randrange(1, 64 * KIB)
    if r < 0.95:
        return rng.randrange(64 * KIB, 4 * MIB)
    return rng.randrange(4 * MIB, 64 * MIB + 1)


def _chunks(data, rng):
    step = rng.choice([1000, 8192, 65536, 1 << 20])
    for i in range(0, len(data), step):
        yield data[i:i + step]


def op_upload(ctx, rng):
    size = pick_size(rng)
    data = rng.randbytes(size)
    sha = hashlib.sha256(data).hexdigest()
    mode = rng.choice(["raw", "raw", "chunked", "multipart", "multipart"])
    name = "soak-%08x.bin" % rng.getrandbits(32)
    ctype = rng.choice(["application/octet-stream", "text/plain",
                        "image/png"])
    url = ctx.base + "/api/upload/"
    t_start = time.monotonic()
    try:
        if mode == "multipart":
            body, mct = H.multipart([H.file_part(data, name, ctype)])
            del data
            resp = requests.post(url, data=body,
                                 headers=_headers({"Content-Type": mct}),
                                 timeout=_timeout())
            sent = len(body)
            del body
        else:
            h = _headers({"Content-Type": ctype,
                          "Content-Disposition":
                          'attachment; filename="%s"' % name})
            payload = data if mode == "raw" else _chunks(data, rng)
            resp = requests.post(url, data=payload, headers=h,
                                 timeout=_timeout())
            sent = size
            del data, payload
    except requests.RequestException as e:
        ctx.ledger.unknown_upload(sha)
        if ctx.in_outage(t_start, time.monotonic()):
            # while Redis is down the module answers 503 before the body and
            # closes; a client still sending sees the close, not the answer
            ctx.count("upload", "closed_early_in_outage", t_start)
            return
        ctx.count("upload", "transport_error", t_start)
        ctx.violation("upload %s %d B: transport error %r" % (mode, size, e))
        return
    st = resp.status_code
    if st == 201:
        doc = _json(resp) or {}
        fid = doc.get("id", "")
        problems = []
        if not H.ID_RE.match(str(fid)):
            problems.append("id %r" % fid)
        if doc.get("size") != size or doc.get("sha256") != sha:
            problems.append("size/sha %r/%r vs sent %d/%s" % (
                doc.get("size"), doc.get("sha256"), size, sha))
        if resp.headers.get("Location") != "/api/files/%s" % fid:
            problems.append("Location %r" % resp.headers.get("Location"))
        if problems:
            ctx.violation("upload %s 201 with %s" % (mode,
                                                     "; ".join(problems)))
        if H.ID_RE.match(str(fid)) and not ctx.ledger.add(
                fid, Entry(sha, size, mode, ctx.now())):
            ctx.violation("upload returned an id already handed out: %s" % fid)
        ctx.count("upload", "201", t_start, nbytes_up=sent)
        return
    if st == 503:
        why = _expected_503(ctx, resp, t_start)
        ctx.count("upload", "503", t_start, nbytes_up=sent)
        if why:
            ctx.violation("upload %s %d B: %s" % (mode, size, why))
        return
    ctx.count("upload", str(st), t_start, nbytes_up=sent)
    ctx.violation("upload %s %d B: unexpected %d %s" % (
        mode, size, st, resp.text[:300]))


def op_download(ctx, rng):
    fid, entry = ctx.ledger.pick_read(rng)
    if fid is None:
        return op_upload(ctx, rng)
    meta = rng.random() < 0.1
    url = "%s/api/files/%s%s" % (ctx.base, fid, "/meta" if meta else "")
    op = "meta" if meta else "download"
    t_start = time.monotonic()
    try:
        try:
            resp = requests.get(url, headers=_headers(), stream=True,
                                timeout=_timeout())
            st = resp.status_code
            if st == 200 and not meta:
                h = hashlib.sha256()
                n = 0
                for chunk in resp.iter_content(1 << 20):
                    h.update(chunk)
                    n += len(chunk)
                resp.close()
                ctx.count(op, "200", t_start, nbytes_down=n)
                if n != entry.size or h.hexdigest() != entry.sha:
                    ctx.violation("download %s: got %d B sha %s, uploaded "
                                  "%d B sha %s" % (fid, n, h.hexdigest(),
                                                   entry.size, entry.sha))
                cl = resp.headers.get("Content-Length")
                if cl != str(entry.size):
                    ctx.violation("download %s: Content-Length %r for %d B"
                                  % (fid, cl, entry.size))
                return
            body = resp.content
        except requests.RequestException as e:
            ctx.count(op, "transport_error", t_start)
            ctx.violation("%s %s: transport error %r" % (op, fid, e))
            return
        if st == 200:
            doc = _json(resp) or {}
            ctx.count(op, "200", t_start)
            if doc.get("sha256") != entry.sha or \
                    str(doc.get("size")) != str(entry.size) or "path" in doc:
                ctx.violation("meta %s: %r" % (fid, doc))
            return
        ctx.count(op, str(st), t_start)
        if st == 503:
            why = _expected_503(ctx, resp, t_start)
            if why:
                ctx.violation("%s %s: %s" % (op, fid, why))
            return
        ctx.violation("%s %s: unexpected %d %r" % (op, fid, st, body[:300]))
    finally:
        ctx.ledger.done_read(fid)


def op_delete(ctx, rng):
    fid, entry = ctx.ledger.pick_delete(rng)
    if fid is None:
        return op_upload(ctx, rng)
    t_start = time.monotonic()
    try:
        resp = requests.delete("%s/api/files/%s" % (ctx.base, fid),
                               headers=_headers(), timeout=_timeout())
    except requests.RequestException as e:
        ctx.ledger.done_delete(fid, "unknown")
        ctx.count("delete", "transport_error", t_start)
        ctx.violation("delete %s: transport error %r" % (fid, e))
        return
    st = resp.status_code
    ctx.count("delete", str(st), t_start)
    if st == 204:
        ctx.ledger.done_delete(fid, "deleted")
        return
    if st == 503:
        # the delete may or may not have reached Redis: settle it at the end
        why = _expected_503(ctx, resp, t_start)
        ctx.ledger.done_delete(fid, "unknown")
        if why:
            ctx.violation("delete %s: %s" % (fid, why))
        return
    ctx.ledger.done_delete(fid, "unknown")
    ctx.violation("delete %s: unexpected %d %r" % (fid, st, resp.text[:300]))


def op_abort(ctx, rng):
    """A client that hangs up in the middle of the body."""
    declared = rng.randrange(64 * KIB, 8 * MIB)
    kind = rng.choice(["raw", "multipart", "chunked"])
    if kind == "raw":
        head = H.request_head("POST", "/api/upload/", [
            ("Content-Type", "application/octet-stream"),
            ("Content-Length", str(declared))])
        body = rng.randbytes(declared)
    elif kind == "multipart":
        body, mct = H.multipart([H.file_part(rng.randbytes(declared),
                                             "gone.bin")])
        head = H.request_head("POST", "/api/upload/", [
            ("Content-Type", mct), ("Content-Length", str(len(body)))])
    else:
        head = H.request_head("POST", "/api/upload/", [
            ("Content-Type", "application/octet-stream"),
            ("Transfer-Encoding", "chunked")])
        body = H.chunked(rng.randbytes(declared), [65536])[:-5]
    cut = rng.randrange(1, len(body))
    reset = rng.random() < 0.5
    t_start = time.monotonic()
    try:
        c = H.RawConn(ctx.port, timeout=CONNECT_TIMEOUT)
    except OSError as e:
        ctx.count("abort", "connect_error", t_start)
        ctx.violation("abort: cannot connect: %r" % e)
        return
    try:
        c.send(head)
        for i in range(0, cut, 256 * KIB):
            c.send(body[i:min(cut, i + 256 * KIB)])
        if rng.random() < 0.5:
            time.sleep(rng.uniform(0, 0.3))
        ctx.count("abort", "rst" if reset else "fin", t_start)
    except OSError:
        # the server answered early (e.g. 503 while Redis is down) and closed
        ctx.count("abort", "server_closed_first", t_start)
    finally:
        try:
            c.close(reset=reset)
        except OSError:
            pass


def _bad_requests(rng):
    """(label, method, path, body, headers, status, code)"""
    data = rng.randbytes(rng.randrange(1, 20000))
    mp, mct = H.multipart([H.file_part(data, "x.bin")])
    boundary = mct.split("boundary=", 1)[1]
    cases = [
        ("mp_no_boundary", "POST", "/api/upload/", mp,
         {"Content-Type": "multipart/form-data"}, 400, "bad_request"),
        ("mp_wrong_boundary", "POST", "/api/upload/", mp,
         {"Content-Type": "multipart/form-data; boundary=nomatch"},
         400, "bad_request"),
        ("mp_lf_only", "POST", "/api/upload/", mp.replace(b"\r\n", b"\n"),
         {"Content-Type": mct}, 400, "bad_request"),
        ("mp_no_close", "POST", "/api/upload/",
         mp[:-len("--%s--\r\n" % boundary) - 2], {"Content-Type": mct},
         400, "bad_request"),
        ("mp_no_file_part", "POST", "/api/upload/",
         H.multipart([H.field_part("note", "hi")], boundary=boundary)[0],
         {"Content-Type": mct}, 400, "bad_request"),
        ("mp_two_files", "POST", "/api/upload/",
         H.multipart([H.file_part(data, "a"), H.file_part(b"b", "b")],
                     boundary=boundary)[0],
         {"Content-Type": mct}, 400, "bad_request"),
        ("mp_part_md5_mismatch", "POST", "/api/upload/",
         H.multipart([H.file_part(data, "m.bin", headers=[
             "Content-MD5: 1B2M2Y8AsgTpgAmY7PhCfg=="])],
             boundary=boundary)[0] if data else mp,
         {"Content-Type": mct}, 400, "bad_request"),
        ("raw_digest_mismatch", "POST", "/api/upload/", data,
         {"Content-Type": "application/octet-stream",
          "Content-Digest": H.content_digest(data + b"x")},
         400, "bad_request"),
        ("raw_digest_malformed", "POST", "/api/upload/", data,
         {"Content-Type": "application/octet-stream",
          "Content-Digest": "sha-256=:not base64!:"}, 400, "bad_request"),
        ("too_large", "POST", "/small/", rng.randbytes(2000),
         {"Content-Type": "application/octet-stream"}, 413, "too_large"),
        ("get_upload", "GET", "/api/upload/", None, {}, 405,
         "method_not_allowed"),
        ("unknown_id", "GET", "/api/files/" + "%032x" % rng.getrandbits(128),
         None, {}, 404, "not_found"),
        ("malformed_id", "GET", "/api/files/%031xZ" % rng.getrandbits(124),
         None, {}, 404, "not_found"),
    ]
    return rng.choice(cases)


def op_bad(ctx, rng):
    label, method, path, body, headers, status, code = _bad_requests(rng)
    t_start = time.monotonic()
    try:
        resp = requests.request(method, ctx.base + path, data=body,
                                headers=_headers(headers), timeout=_timeout(),
                                allow_redirects=False)
    except requests.RequestException as e:
        ctx.count("bad", "transport_error", t_start)
        ctx.violation("bad %s: transport error %r" % (label, e))
        return
    st = resp.status_code
    ctx.count("bad", str(st), t_start)
    if st == status and (code is None or _error_ok(resp, code)):
        return
    if st == 503 and method == "POST" or st == 503 and path.startswith(
            "/api/files/"):
        why = _expected_503(ctx, resp, t_start)
        if not why:
            return
        ctx.violation("bad %s: %s" % (label, why))
        return
    ctx.violation("bad %s: expected %d %s, got %d %r" % (
        label, status, code, st, resp.text[:300]))


OPS = {"upload": op_upload, "download": op_download, "delete": op_delete,
       "abort": op_abort, "bad": op_bad}


def worker(ctx, idx):
    rng = random.Random(ctx.args.seed * 1009 + idx)
    names = [n for n, _ in OP_WEIGHTS]
    weights = [w for _, w in OP_WEIGHTS]
    while not ctx.stop.is_set() and time.monotonic() < ctx.deadline:
        op = rng.choices(names, weights)[0]
        try:
            OPS[op](ctx, rng)
        except Exception:  # a bug in the soak itself must not pass silently
            ctx.count(op, "client_exception")
            ctx.violation("client %d, %s: %s" % (idx, op,
                                                 traceback.format_exc()))


# --------------------------------------------------------------------------
# Events and memory sampling


def _rss_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0




def sampler(ctx):
    while not ctx.stop.is_set():
        proc = ctx.stack.apache.proc
        if proc is not None:
            kids = H.child_pids(proc.pid)
            total = sum(_rss_kib(p) for p in kids)
            with ctx.lock:
                ctx.rss.append((ctx.now(), total, len(kids),
                                _rss_kib(proc.pid)))
        ctx.stop.wait(1.0)


def controller(ctx):
    """The Redis restart and the graceful restart, at fixed points."""
    secs = ctx.args.seconds

    def wait_until(frac):
        ctx.stop.wait(max(0.0, ctx.t0 + frac * secs - time.monotonic()))
        return not ctx.stop.is_set()

    if not wait_until(REDIS_AT):
        return
    redis = ctx.stack.redis
    pid = redis.proc.pid
    with ctx.lock:
        ctx.outage_start = time.monotonic()
    ctx.event("Redis: SIGTERM to pid %d" % pid)
    redis.stop()
    ctx.stop.wait(REDIS_DOWN_S)
    try:
        redis.start()
    except Exception as e:
        ctx.violation("Redis did not come back: %r" % e)
        ctx.stop.set()
        return
    with ctx.lock:
        ctx.outage = (ctx.outage_start, time.monotonic())
    ctx.event("Redis: started again on port %d (pid %d), keys: %d" % (
        redis.port, redis.proc.pid, redis.client().dbsize()))

    if not wait_until(GRACEFUL_AT):
        return
    apid = ctx.stack.apache.proc.pid
    before = sorted(H.child_pids(apid))
    os.kill(apid, signal.SIGUSR1)
    ctx.graceful_at = ctx.now()
    ctx.event("Apache: SIGUSR1 (graceful) to pid %d, children %s" % (
        apid, before))
    H._wait_for(lambda: set(H.child_pids(apid)) - set(before), 30.0, 0.2)
    ctx.event("Apache: children after graceful %s" % sorted(H.child_pids(apid)))


# --------------------------------------------------------------------------
# Reconciliation


def _audit_index(rv):
    stored, deleted, rejected = set(), set(), set()
    events = collections.Counter()
    last = "-"
    while True:
        batch = rv.r.xrange(rv.audit_key, min=last, count=10000)
        if last != "-" and batch and batch[0][0] == last:
            batch = batch[1:]
        if not batch:
            break
        for eid, f in batch:
            ev = f.get("event", "")
            events[ev] += 1
            if ev == "upload.stored" and f.get("status") == "201":
                stored.add(f.get("id"))
            elif ev == "file.deleted" and f.get("status") == "204":
                deleted.add(f.get("id"))
            elif ev == "upload.rejected":
                rejected.add(f.get("id"))
        last = batch[-1][0]
    return stored, deleted, rejected, events


def reconcile(ctx):
    stack = ctx.stack
    led = ctx.ledger
    storage = stack.site.storage
    rv = stack.rv
    strays = H.stray_files(storage)
    for rel in strays:
        ctx.violation("stray file in storage: %s" % rel)
    on_disk = {os.path.basename(rel)[:-4]
               for rel in H.storage_files(storage) if rel not in strays}
    meta_ids = {k[len(stack.prefix) + len("file:"):]
                for k in rv.file_keys()}
    stored_audit, deleted_audit, rejected_audit, events = _audit_index(rv)
    stats = collections.Counter()

    # deletes whose answer was lost or 503: both gone, or both there
    for fid, entry in sorted(led.limbo.items()):
        f, m = fid in on_disk, fid in meta_ids
        if f and m:
            led.live[fid] = entry
            stats["limbo_kept"] += 1
        elif not f and not m:
            led.deleted[fid] = entry
            stats["limbo_deleted"] += 1
        else:
            ctx.violation("delete of %s with no clear answer left %s" % (
                fid, "the file without metadata" if f
                else "metadata without the file"))
            stats["limbo_inconsistent"] += 1

    for fid, entry in sorted(led.deleted.items()):
        if fid in on_disk:
            ctx.violation("deleted %s: file still on disk" % fid)
        if fid in meta_ids:
            ctx.violation("deleted %s: metadata still in Redis" % fid)
        if fid not in deleted_audit and fid not in led.limbo:
            ctx.violation("deleted %s: no file.deleted audit entry" % fid)

    live_bytes = 0
    for fid, entry in sorted(led.live.items()):
        path = os.path.join(storage, fid[:2], fid + ".enc")
        if fid not in on_disk:
            ctx.violation("stored %s (%d B, %s): file missing" % (
                fid, entry.size, entry.mode))
            continue
        meta = rv.meta(fid)
        if not meta:
            ctx.violation("stored %s: metadata missing" % fid)
        elif meta.get("sha256") != entry.sha or \
                meta.get("size") != str(entry.size) or \
                meta.get("path") != "%s/%s.enc" % (fid[:2], fid):
            ctx.violation("stored %s: metadata %r" % (fid, meta))
        if fid not in stored_audit:
            ctx.violation("stored %s: no upload.stored audit entry" % fid)
        try:
            with open(path, "rb") as f:
                blob = f.read()
            plain, kek = H.decrypt_blob(blob, stack.keks, fid)
        except (OSError, H.FormatError) as e:
            ctx.violation("stored %s: cannot decrypt: %s" % (fid, e))
            continue
        if kek != stack.kek1:
            ctx.violation("stored %s: not under the first key" % fid)
        if len(plain) != entry.size or \
                hashlib.sha256(plain).hexdigest() != entry.sha:
            ctx.violation("stored %s: decrypts to %d B that differ from the "
                          "%d B sent" % (fid, len(plain), entry.size))
        live_bytes += entry.size
        stats["verified"] += 1
        del plain, blob

    # anything else on disk or in Redis came from a non-201, unless it is an
    # upload whose answer the client never got
    known = set(led.live) | set(led.deleted) | set(led.limbo)
    explained = set()
    for fid in sorted((on_disk | meta_ids) - known):
        meta = rv.meta(fid)
        sha = meta.get("sha256") if meta else None
        if fid in on_disk and meta and led.unknown_uploads.get(sha):
            led.unknown_uploads[sha] -= 1
            stats["unanswered_upload_stored"] += 1
            explained.add(fid)
            continue
        ctx.violation("%s: %s not from any 201 (file %s, metadata %s)" % (
            "orphan", fid, fid in on_disk, bool(meta)))
    # an upload.stored entry for an upload whose client got no 201 (its
    # metadata write ran, the answer was lost) must be followed by the
    # upload.rejected that records the metadata being taken back
    for fid in sorted(stored_audit - known - explained):
        if fid in rejected_audit:
            stats["stored_then_settled"] += 1
        else:
            ctx.violation("audit says %s was stored, but no client got its "
                          "201 and no upload.rejected entry takes it back"
                          % fid)
    stats["live_bytes"] = live_bytes
    return stats, events


def tamper(ctx):
    """Damage that reconcile() must each report: a flipped ciphertext byte,
    a missing file, a temp file, metadata without a file, an upload.stored
    audit entry nobody was told about."""
    stack, led = ctx.stack, ctx.ledger
    live = sorted(led.live)
    storage = stack.site.storage
    if len(live) >= 2:
        path = os.path.join(storage, live[0][:2], live[0] + ".enc")
        with open(path, "r+b") as f:
            f.seek(H.HEADER_LEN)
            b = f.read(1)
            f.seek(H.HEADER_LEN)
            f.write(bytes([b[0] ^ 1]))
        os.unlink(os.path.join(storage, live[1][:2], live[1] + ".enc"))
    with open(os.path.join(storage, "tamper.tmp"), "wb") as f:
        f.write(b"x")
    stack.rv.r.hset(stack.prefix + "file:" + "f" * 32, "id", "f" * 32)
    stack.rv.r.xadd(stack.rv.audit_key, {"event": "upload.stored",
                                         "status": "201", "id": "e" * 32})
    ctx.event("tamper: flipped a byte of %s, removed %s, planted tamper.tmp, "
              "metadata for %s and an upload.stored entry for %s" % (
                  live[:1], live[1:2], "f" * 32, "e" * 32))


# --------------------------------------------------------------------------
# Memory


def _window_max(samples, lo, hi, secs):
    vals = [s[1] for s in samples if lo * secs <= s[0] < hi * secs]
    return max(vals) if vals else None


def memory_check(ctx):
    secs = ctx.args.seconds
    s = ctx.rss
    bound = ctx.args.rss_bound_mib * 1024
    out = {"samples": len(s)}
    if len(s) < 6:
        ctx.violation("only %d RSS samples" % len(s))
        return out
    out["first_kib"], out["last_kib"] = s[0][1], s[-1][1]
    out["max_kib"] = max(x[1] for x in s)
    out["children_first"], out["children_last"] = s[0][2], s[-1][2]
    out["children_max"] = max(x[2] for x in s)
    out["parent_first_kib"], out["parent_last_kib"] = s[0][3], s[-1][3]
    first = _window_max(s, 0, 1 / 3, secs)
    last = _window_max(s, 2 / 3, 1.01, secs)
    post = _window_max(s, 0.45, 0.65, secs)
    tail = _window_max(s, 0.80, 1.01, secs)
    out.update(first_third_max_kib=first, last_third_max_kib=last,
               post_graceful_max_kib=post, last_fifth_max_kib=tail)
    if None in (first, last, post, tail):
        ctx.violation("RSS windows incomplete: %r" % out)
        return out
    out["growth_a_kib"] = last - first
    out["growth_b_kib"] = tail - post
    if last - first >= bound:
        ctx.violation("RSS growth A: last third max %.1f MiB vs first third "
                      "max %.1f MiB (+%.1f MiB, bound %d MiB)" % (
                          last / 1024, first / 1024, (last - first) / 1024,
                          ctx.args.rss_bound_mib))
    if tail - post >= bound:
        ctx.violation("RSS growth B: last 20%% max %.1f MiB vs 45-65%% max "
                      "%.1f MiB (+%.1f MiB, bound %d MiB)" % (
                          tail / 1024, post / 1024, (tail - post) / 1024,
                          ctx.args.rss_bound_mib))
    return out


# --------------------------------------------------------------------------


def _log_levels(text):
    """Lines per level, and the first few warn-level lines."""
    levels = collections.Counter()
    warns = []
    for line in text.splitlines():
        parts = line.split("] [", 2)
        if len(parts) > 1 and ":" in parts[1]:
            level = parts[1].rsplit(":", 1)[1]
            levels[level] += 1
            if level == "warn" and len(warns) < 10:
                warns.append(line)
    return levels, warns


def _pct(vals, p):
    if not vals:
        return 0.0
    vals = sorted(vals)
    return vals[min(len(vals) - 1, int(p * len(vals)))]


def summary(ctx, stats, events, mem, levels, elapsed):
    print("\n=== soak summary ===")
    print("duration %.1fs (load %ds), %d client threads, seed %d, mpm %s" % (
        elapsed, ctx.args.seconds, ctx.args.threads, ctx.args.seed, H.mpm()))
    for e in ctx.events:
        print("event   " + e)
    ops = collections.defaultdict(dict)
    for (op, outcome), n in sorted(ctx.counts.items()):
        ops[op][outcome] = n
    total = sum(ctx.counts.values())
    for op in sorted(ops):
        lat = ctx.latency.get(op, [])
        print("%-9s %s   (p50 %.3fs, p99 %.3fs, max %.3fs)" % (
            op, ", ".join("%s=%d" % kv for kv in sorted(ops[op].items())),
            _pct(lat, 0.5), _pct(lat, 0.99), max(lat) if lat else 0.0))
    load = ctx.args.seconds
    print("requests %d (%.1f/s); uploaded %.1f MiB (%.1f MiB/s); downloaded "
          "%.1f MiB (%.1f MiB/s)" % (
              total, total / load, ctx.bytes_up / MIB,
              ctx.bytes_up / MIB / load,
              ctx.bytes_down / MIB, ctx.bytes_down / MIB / load))
    print("ledger: live %d (%.1f MiB, all decrypted and matched: %d), "
          "deleted %d, unsettled deletes %d/%d kept/gone" % (
              len(ctx.ledger.live), stats.get("live_bytes", 0) / MIB,
              stats.get("verified", 0), len(ctx.ledger.deleted),
              stats.get("limbo_kept", 0), stats.get("limbo_deleted", 0)))
    print("audit events: %s" % dict(sorted(events.items())))
    if stats.get("stored_then_settled") or \
            stats.get("unanswered_upload_stored"):
        print("metadata written but the answer lost: %d taken back (audited), "
              "%d kept for a client that saw no answer" % (
                  stats.get("stored_then_settled", 0),
                  stats.get("unanswered_upload_stored", 0)))
    print("error log lines by level: %s" % dict(sorted(levels.items())))
    if mem.get("samples", 0) >= 6 and "first_third_max_kib" in mem:
        print("Apache RSS (sum over children): first %.1f MiB, last %.1f MiB, "
              "max %.1f MiB; children first/last/max %d/%d/%d; parent "
              "%.1f -> %.1f MiB" % (
                  mem["first_kib"] / 1024, mem["last_kib"] / 1024,
                  mem["max_kib"] / 1024, mem["children_first"],
                  mem["children_last"], mem["children_max"],
                  mem["parent_first_kib"] / 1024,
                  mem["parent_last_kib"] / 1024))
        if mem.get("growth_a_kib") is not None:
            print("RSS growth A (last third max - first third max): %+.1f MiB;"
                  " B (last 20%% max - 45..65%% max): %+.1f MiB; bound %d MiB"
                  % (mem["growth_a_kib"] / 1024, mem["growth_b_kib"] / 1024,
                     ctx.args.rss_bound_mib))
    if ctx.nviolations:
        print("\nVIOLATIONS: %d" % ctx.nviolations)
        for v in ctx.violations:
            print("  " + v)
    else:
        print("\nOK: no violations")


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=300,
                    help="duration of the load (default 300)")
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--rss-bound-mib", type=int, default=32,
                    help="allowed RSS growth of Apache's children (MiB)")
    ap.add_argument("--mpm", default="event",
                    choices=["event", "worker", "prefork"])
    ap.add_argument("--module", help="mod_secupload.so to load")
    ap.add_argument("--json", help="write the summary figures here")
    ap.add_argument("--keep", action="store_true",
                    help="keep the server root for inspection")
    ap.add_argument("--tamper", action="store_true",
                    help="check the checks: damage storage and Redis before "
                    "the reconciliation; the run must then fail")
    a = ap.parse_args(argv)
    if a.seconds < 10 or a.seconds > 24 * 3600:
        ap.error("--seconds must be 10..86400")
    if a.threads < 1 or a.threads > 64:
        ap.error("--threads must be 1..64")
    if a.seed is None:
        a.seed = random.SystemRandom().randrange(1 << 31)
    return a


def main(argv):
    args = parse_args(argv)
    os.environ["SECUPLOAD_MPM"] = args.mpm
    if args.module:
        os.environ["SECUPLOAD_MODULE"] = os.path.abspath(args.module)
    if args.keep:
        os.environ["SECUPLOAD_KEEP_TMP"] = "1"
    if not os.path.exists(H.module_path()):
        print("soak: the module is not built: %s" % H.module_path(),
              file=sys.stderr)
        return 2

    free = shutil.disk_usage(tempfile.gettempdir()).free
    if free < args.seconds * 80 * MIB:
        print("soak: warning: %.1f GiB free in %s; a %ds run may need %.1f GiB"
              % (free / (1 << 30), tempfile.gettempdir(), args.seconds,
                 args.seconds * 80 * MIB / (1 << 30)), flush=True)
    # a private copy: a rebuild during the run must not change the module
    # that the graceful restart loads again
    with open(H.module_path(), "rb") as f:
        module_sha = hashlib.sha256(f.read()).hexdigest()[:16]
    copy_dir = tempfile.mkdtemp(prefix="secupload-soak-module-")
    os.chmod(copy_dir, 0o755)
    module_copy = os.path.join(copy_dir, "mod_secupload.so")
    shutil.copy2(H.module_path(), module_copy)
    os.environ["SECUPLOAD_MODULE"] = module_copy
    try:
        return run(args, module_sha)
    finally:
        shutil.rmtree(copy_dir, ignore_errors=True)


def run(args, module_sha):
    stack = Stack("soak")
    redis_dir = os.path.join(stack.site.root, "redis")
    os.mkdir(redis_dir, 0o700)
    stack.redis = aof_redis(redis_dir, stack.redis.port)
    try:
        stack.start()
    except Exception as e:
        print("soak: cannot start the servers: %s" % e, file=sys.stderr)
        stack.stop()
        return 2
    print("soak: Apache pid %d on %s (mpm %s), Redis pid %d on port %d, "
          "root %s, seed %d, %ds, module sha256 %s" % (
              stack.apache.proc.pid, stack.apache.base, H.mpm(),
              stack.redis.proc.pid, stack.redis.port, stack.site.root,
              args.seed, args.seconds, module_sha), flush=True)

    ctx = Ctx(args, stack)
    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(ctx, i), daemon=True,
                                name="client-%d" % i)
               for i in range(args.threads)]
    aux = [threading.Thread(target=sampler, args=(ctx,), daemon=True),
           threading.Thread(target=controller, args=(ctx,), daemon=True)]
    for t in threads + aux:
        t.start()
    try:
        while time.monotonic() < ctx.deadline and not ctx.stop.is_set():
            time.sleep(0.5)
    except KeyboardInterrupt:
        ctx.violation("interrupted")
    # no new requests; those in flight finish (bounded by the read timeout)
    end_by = time.monotonic() + READ_TIMEOUT + 30
    for t in threads:
        t.join(max(0.1, end_by - time.monotonic()))
        if t.is_alive():
            ctx.violation("%s still busy %ds after the end" % (
                t.name, READ_TIMEOUT + 30))
    ctx.stop.set()
    for t in aux:
        t.join(60)
    elapsed = time.monotonic() - started

    # give anything the server does after answering a moment to settle
    time.sleep(1.0)
    if not stack.apache.running:
        ctx.violation("Apache is not running at the end")
    if not stack.redis.running:
        ctx.violation("Redis is not running at the end")
    stats, events = collections.Counter(), collections.Counter()
    if args.tamper:
        tamper(ctx)
    try:
        stats, events = reconcile(ctx)
    except Exception:
        ctx.violation("reconciliation failed: %s" % traceback.format_exc())
    mem = memory_check(ctx)
    problems = stack.apache.take_problems()
    levels, warns = _log_levels(stack.apache.log_text())
    if ctx.nviolations or problems:
        os.environ["SECUPLOAD_KEEP_TMP"] = "1"  # evidence for the report
    problems += stack.stop()
    for p in problems:
        ctx.violation("server log: %s" % p)
    summary(ctx, stats, events, mem, levels, elapsed)
    for w in warns:
        print("warn: " + w)
    if os.environ.get("SECUPLOAD_KEEP_TMP") == "1":
        print("server root kept: %s" % stack.site.root)
    if args.json:
        doc = {"seconds": args.seconds, "threads": args.threads,
               "module_sha256": module_sha,
               "seed": args.seed, "mpm": H.mpm(), "elapsed": elapsed,
               "counts": {"%s:%s" % k: v for k, v in ctx.counts.items()},
               "bytes_up": ctx.bytes_up, "bytes_down": ctx.bytes_down,
               "ledger_live": len(ctx.ledger.live),
               "ledger_deleted": len(ctx.ledger.deleted),
               "stats": dict(stats), "audit": dict(events),
               "log_levels": dict(levels), "memory": mem,
               "rss_samples": ctx.rss, "events": ctx.events,
               "violations": ctx.violations,
               "nviolations": ctx.nviolations}
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
    return 1 if ctx.nviolations else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
