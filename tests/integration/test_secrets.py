"""Secrets stay secret: the key-encryption keys, the per-file data keys and
the plaintext never show up in the logs (at LogLevel debug), in Redis (every
command the module sent, every key under the prefix, the RDB and AOF files),
in the audit stream or in the storage dir; stored files and directories are
private; and a core dump of an Apache process holds neither the KEK (kept in
MADV_DONTDUMP memory) nor a data key (wiped after use).

Own servers: an event-MPM stack at LogLevel debug with Redis writing an AOF
and watched through MONITOR, and a one-child prefork stack for the cores."""

import os
import secrets
import shutil
import socket
import stat
import subprocess
import threading
import time

import pytest
import redis
import requests

import secupload_harness as H
from secupload_stack import Stack, report_shutdown, running

MARKER_PREFIX = b"PLAINTEXT-MARKER-"


# ------------------------------------------------------------------ helpers

def redis_repr(data):
    """How MONITOR prints an argument (Redis's sdscatrepr, without quotes)."""
    out = []
    for b in data:
        c = chr(b)
        if c in '\\"':
            out.append("\\" + c)
        elif c == "\n":
            out.append("\\n")
        elif c == "\r":
            out.append("\\r")
        elif c == "\t":
            out.append("\\t")
        elif c == "\a":
            out.append("\\a")
        elif c == "\b":
            out.append("\\b")
        elif 32 <= b < 127:
            out.append(c)
        else:
            out.append("\\x%02x" % b)
    return "".join(out).encode("ascii")


def secret_forms(name, raw):
    """The ways a secret could be written down: raw, hex, HEX, MONITOR's
    escaping of the raw bytes."""
    return {name + " (raw)": raw,
            name + " (hex)": raw.hex().encode(),
            name + " (HEX)": raw.hex().upper().encode(),
            name + " (MONITOR repr)": redis_repr(raw)}


def find_all(hay, needle, limit=5):
    out, i = [], hay.find(needle)
    while i != -1 and len(out) < limit:
        out.append(i)
        i = hay.find(needle, i + 1)
    return out


def search(haystacks, needles):
    """Every (needle, haystack, offset, context) found."""
    hits = []
    for hname, hay in haystacks.items():
        for nname, needle in needles.items():
            for off in find_all(hay, needle):
                ctx = hay[max(0, off - 48):off + len(needle) + 48]
                hits.append("%s in %s at offset %d: %r" % (nname, hname, off,
                                                           ctx))
    return hits


def data_key(blob, kek):
    """The 64-byte data key of a stored file, unwrapped with the KEK."""
    from cryptography.hazmat.primitives.keywrap import aes_key_unwrap
    return aes_key_unwrap(kek, blob[16:88])


def read_tree(root, skip=()):
    """{relative path: bytes} of every regular file under root."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if os.path.join(dirpath, d) not in skip]
        for fn in files:
            full = os.path.join(dirpath, fn)
            if full in skip or not os.path.isfile(full) or \
                    os.path.islink(full):
                continue
            with open(full, "rb") as f:
                out[os.path.relpath(full, root)] = f.read()
    return out


class Monitor:
    """Every command Redis receives, through MONITOR on a raw socket."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), 5)
        self.sock.sendall(b"MONITOR\r\n")
        self.sock.settimeout(0.2)
        self.buf = bytearray()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.done.is_set():
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            if not chunk:
                break
            self.buf += chunk

    def stop(self):
        time.sleep(0.3)
        self.done.set()
        self.thread.join(5)
        self.sock.close()
        return bytes(self.buf)


def marker():
    return MARKER_PREFIX + secrets.token_hex(16).encode()


def with_marker(m, size):
    """size random bytes with the marker at the start, the middle and the
    end (so that it straddles no matter how the body is cut)."""
    body = bytearray(secrets.token_bytes(size))
    for at in (0, size // 2, size - len(m)):
        body[at:at + len(m)] = m
    return bytes(body)


def _core_skip_reason():
    if os.environ.get("SECUPLOAD_LD_PRELOAD"):
        return ("a sanitizer runtime is preloaded: its shadow memory makes a "
                "core of the process terabytes large")
    if os.environ.get("SECUPLOAD_VALGRIND") == "1":
        return "under valgrind a core is valgrind's, not Apache's memory"
    return None


CORE_MAX = 4 << 30


# ------------------------------------------------------------- the servers

@pytest.fixture(scope="module")
def dbg(module_so, request):
    s = Stack("secrets", extra="LogLevel debug secupload:trace8\n")
    s.monitor = None
    try:
        s.start()
        r = s.redis.client()
        # uncompressed RDB and DUMP payloads, so that a search sees the bytes
        r.config_set("rdbcompression", "no")
        r.config_set("appendonly", "yes")
        H._wait_for(lambda: r.info("persistence").get(
            "aof_rewrite_in_progress") == 0, 10)
        s.monitor = Monitor(s.redis.port)
    except Exception:
        s.stop()
        raise
    yield s
    if s.monitor and not s.monitor.done.is_set():
        s.monitor.stop()
    report_shutdown(request, s.stop())


@pytest.fixture(scope="module")
def core_stack(module_so, request):
    """Prefork, one child, no keep-alive: the child that served a request
    is the only one there is."""
    why = _core_skip_reason()
    if why:
        pytest.skip(why)
    old = os.environ.get("SECUPLOAD_MPM")
    os.environ["SECUPLOAD_MPM"] = "prefork"
    try:
        s = Stack("core", extra="StartServers 1\nMinSpareServers 1\n"
                  "MaxSpareServers 1\nServerLimit 1\nMaxRequestWorkers 1\n"
                  "KeepAlive Off\n")
    finally:
        if old is None:
            del os.environ["SECUPLOAD_MPM"]
        else:
            os.environ["SECUPLOAD_MPM"] = old
    yield from running(request, s)


# ------------------------------------------------- logs, Redis and storage

def test_no_secret_in_logs_redis_audit_or_storage(dbg):
    s = dbg
    raw_marker, mp_marker, bad_marker, gone_marker = (marker(), marker(),
                                                      marker(), marker())
    stored = []

    # the file name is metadata: it must reach Redis, which shows that each
    # Redis view below holds what the module sent, in searchable form
    name_token = "name-" + secrets.token_hex(12)

    # stored: raw (spans several brigades) and multipart
    data = with_marker(raw_marker, 3 * 1024 * 1024 + 5)
    doc = s.check_stored(s.post(data, {
        "Content-Type": "application/octet-stream",
        "Content-Disposition": 'attachment; filename="%s"' % name_token}),
        data)
    stored.append((doc["id"], data))
    data = with_marker(mp_marker, 200000)
    resp, _ = s.post_multipart([H.file_part(data, "mp.bin")])
    doc = s.check_stored(resp, data)
    stored.append((doc["id"], data))

    # rejected: digest mismatches, raw and multipart part
    data = with_marker(bad_marker, 100000)
    s.expect_error(lambda: s.post(data, {
        "Content-Type": "application/octet-stream",
        "Content-Digest": H.content_digest(data + b"!")}), 400, "bad_request")
    bad_part = H.file_part(data, "b.bin", headers=[
        "Content-MD5: 1B2M2Y8AsgTpgAmY7PhCfg=="])
    s.expect_error(lambda: s.post_multipart([bad_part])[0], 400,
                   "bad_request")

    # a client that hangs up mid-body
    data = with_marker(gone_marker, 2 * 1024 * 1024)
    c = H.RawConn(s.apache.port)
    c.send(H.request_head("POST", "/api/upload/", [
        ("Content-Type", "application/octet-stream"),
        ("Content-Length", str(len(data) * 2))]))
    c.send(data)
    time.sleep(0.3)
    c.close(reset=True)
    H._wait_for(lambda: not H.stray_files(s.site.storage), 5)

    # read back, inspect; both go through the log and the audit stream
    answers = []
    for fid, plain in stored:
        r = requests.get(s.url("/api/files/" + fid), timeout=60)
        assert r.status_code == 200 and r.content == plain
        r = requests.get(s.url("/api/files/%s/meta" % fid), timeout=60)
        assert r.status_code == 200
        answers.append(r.content)

    # --- gather everything the server side wrote down
    time.sleep(0.5)
    monitor = s.monitor.stop()
    rbin = redis.Redis(host="127.0.0.1", port=s.redis.port,
                       socket_timeout=10)  # replies as bytes
    keys = list(rbin.scan_iter(match=s.prefix.encode() + b"*", count=1000))
    assert keys, "no keys under the prefix at all"
    redis_hay = {}
    for k in keys:
        redis_hay["DUMP " + k.decode()] = rbin.dump(k) or b""
        t = rbin.type(k)
        if t == b"hash":
            redis_hay["HGETALL " + k.decode()] = b"\0".join(
                a + b"\0" + b for a, b in rbin.hgetall(k).items())
        elif t == b"stream":
            redis_hay["XRANGE " + k.decode()] = b"\0".join(
                b"\0".join(a + b"\0" + b for a, b in f.items())
                for _id, f in rbin.xrange(k))
    assert rbin.xlen(s.prefix + "audit") >= 6
    rbin.save()
    H._wait_for(lambda: rbin.info("persistence").get(
        "aof_rewrite_in_progress") == 0, 10)
    files = read_tree(s.site.root, skip={s.site.keydir})
    names = sorted(files)
    assert "dump.rdb" in names, names
    assert any("appendonly" in n for n in names), names
    assert any(n.startswith("storage" + os.sep) for n in names), names
    assert "logs/error.log" in names and "logs/access.log" in names, names
    haystacks = dict(("file " + n, b) for n, b in files.items())
    haystacks.update(redis_hay)
    haystacks["MONITOR stream"] = monitor
    for i, a in enumerate(answers):
        haystacks["meta answer %d" % i] = a

    # debug logging is on, and the searches do find what is there
    token = name_token.encode()
    redis_views = ["MONITOR stream", "file dump.rdb"] + [
        h for h in haystacks if "appendonly" in h and h.endswith(".aof")] + [
        h for h in redis_hay if h.startswith(("HGETALL", "DUMP"))
        and stored[0][0] in h]
    assert len(redis_views) >= 5, redis_views
    for h in redis_views:
        assert token in haystacks[h], "control: file name not found in " + h
    log = files["logs/error.log"]
    assert b":debug]" in log, "LogLevel debug did not take"
    assert s.prefix.encode() + b"file:" in monitor, "MONITOR saw nothing"
    assert stored[0][0].encode() in files["logs/error.log"]

    needles = {}
    for i, kek in enumerate(s.keks):
        needles.update(secret_forms("KEK%d" % (i + 1), kek))
    for n, m in (("raw", raw_marker), ("multipart", mp_marker),
                 ("rejected", bad_marker), ("hung-up", gone_marker)):
        needles["marker of the %s upload" % n] = m
    for fid, _plain in stored:
        blob = files[os.path.join("storage", fid[:2], fid + ".enc")]
        dk = data_key(blob, s.kek1)
        needles.update(secret_forms("enc key of %s" % fid, dk[:32]))
        needles.update(secret_forms("MAC key of %s" % fid, dk[32:]))
    hits = search(haystacks, needles)
    assert not hits, "secrets found:\n" + "\n".join(hits[:30])


def test_storage_modes(dbg):
    s = dbg
    for _ in range(3):
        data = secrets.token_bytes(1000)
        s.check_stored(s.post(data, {"Content-Type": "text/plain"}), data)
    seen_dirs = seen_files = 0
    for dirpath, dirs, files in os.walk(s.site.storage):
        for d in dirs:
            st = os.lstat(os.path.join(dirpath, d))
            assert stat.S_ISDIR(st.st_mode)
            assert stat.S_IMODE(st.st_mode) == 0o700, (d, oct(st.st_mode))
            assert st.st_uid == H.server_uid()
            seen_dirs += 1
        for fn in files:
            st = os.lstat(os.path.join(dirpath, fn))
            assert stat.S_ISREG(st.st_mode), fn
            assert stat.S_IMODE(st.st_mode) == 0o600, (fn, oct(st.st_mode))
            assert st.st_uid == H.server_uid()
            seen_files += 1
    assert seen_dirs >= 1 and seen_files >= 3


# ------------------------------------------------------------- core dumps



def _gcore(pid, path, include_excluded=False):
    """Core of a live process; (ok, output). With include_excluded, also the
    MADV_DONTDUMP mappings (the control that shows the search can see a key
    that is there)."""
    gdb = shutil.which("gdb")
    if gdb is None:
        return False, "gdb is not installed (apt-get install -y gdb)"
    cmds = ["-ex", "set pagination off"]
    if include_excluded:
        cmds += ["-ex", "set dump-excluded-mappings on"]
    cmds += ["-ex", "gcore %s" % path, "-ex", "detach"]
    try:
        p = subprocess.run([gdb, "-nx", "-batch", "-p", str(pid)] + cmds,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL, timeout=180)
    except subprocess.TimeoutExpired:
        return False, "gdb timed out"
    out = p.stdout.decode("utf-8", "replace")
    ok = os.path.exists(path) and os.path.getsize(path) > 0
    if not ok and os.path.exists(path):
        os.unlink(path)
    return ok, out


def _dontdump_mappings(pid):
    """Address ranges the kernel marks dd (do not dump) in smaps."""
    out, cur = [], None
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            head = line.split()
            if head and "-" in head[0] and not line.startswith("VmFlags"):
                cur = head[0]
            elif line.startswith("VmFlags:") and " dd" in line:
                out.append(cur)
    return out


def _live_data_key(s, child, tmp_path):
    """Names of the halves of an in-flight upload's data key found in a core
    of the child taken mid-body."""
    size = 4 * 1024 * 1024
    c = H.RawConn(s.apache.port)
    try:
        c.send(H.request_head("POST", "/api/upload/", [
            ("Content-Type", "application/octet-stream"),
            ("Content-Length", str(size))]))

        def header():
            for rel in H.stray_files(s.site.storage):
                try:
                    with open(os.path.join(s.site.storage, rel), "rb") as f:
                        h = f.read(H.HEADER_LEN)
                except OSError:
                    continue
                if len(h) == H.HEADER_LEN:
                    return h
            return None
        # a version 2 upload writes a batch of segments once the next one
        # fills: the body goes on in pieces until the header is on disk,
        # but never to its end
        h, sent = None, 0
        while h is None and sent < size - 256 * 1024:
            c.send(secrets.token_bytes(256 * 1024))
            sent += 256 * 1024
            h = H._wait_for(header, 0.5 if sent < size // 2 else 5)
        assert h, "no temp file with a header while the body streams in"
        dk = data_key(h, s.kek1)
        path = str(tmp_path / "core-live")
        ok, out = _gcore(child, path)
        assert ok, "gcore mid-upload failed:\n%s" % out[-2000:]
        core = _read_core(path)
        return [n for n, k in (("enc key", dk[:32]), ("MAC key", dk[32:]))
                if k in core]
    finally:
        c.close(reset=True)
        H._wait_for(lambda: not H.stray_files(s.site.storage), 10)


def _read_core(path):
    """The core's bytes; skip (after removing it) if it is absurdly big."""
    try:
        size = os.path.getsize(path)
        if size > CORE_MAX:
            pytest.skip("the core of an Apache process is %d bytes; not "
                        "searched" % size)
        with open(path, "rb") as f:
            return f.read()
    finally:
        os.unlink(path)


def test_core_dump_holds_no_kek_or_data_key(core_stack, tmp_path,
                                            record_property):
    s = core_stack
    kids = H._wait_for(lambda: H.child_pids(s.apache.proc.pid), 10)
    assert kids, "no child process"
    m = marker()
    data = with_marker(m, 300000)
    doc = s.check_stored(s.post(data, {
        "Content-Type": "application/octet-stream",
        "Connection": "close"}), data)
    fid = doc["id"]
    # and one in a multipart body, in chunks
    mdata = with_marker(m, 200000)
    body, ctype = H.multipart([H.file_part(mdata, "m.bin")])
    s.check_stored(s.post(H.chunked(body, [7000]), {
        "Content-Type": ctype, "Transfer-Encoding": "chunked",
        "Connection": "close"}), mdata, name="m.bin")
    # a read unwraps the data key again in the same child
    r = requests.get(s.url("/api/files/" + fid),
                     headers={"Connection": "close"}, timeout=60)
    assert r.status_code == 200 and r.content == data
    # and a rejected upload: a data key made and thrown away
    s.expect_error(lambda: s.post(with_marker(m, 50000), {
        "Content-Type": "application/octet-stream", "Connection": "close",
        "Content-Digest": H.content_digest(b"other")}), 400, "bad_request")
    kids = H.child_pids(s.apache.proc.pid)
    assert len(kids) == 1, "expected one child, found %r" % kids
    child, parent = kids[0], s.apache.proc.pid

    with open(os.path.join(s.site.storage, fid[:2], fid + ".enc"), "rb") as f:
        dk = data_key(f.read(), s.kek1)
    needles = {}
    for i, kek in enumerate(s.keks):
        needles.update(secret_forms("KEK%d" % (i + 1), kek))
    needles["enc key (raw)"] = dk[:32]
    needles["MAC key (raw)"] = dk[32:]
    needles["enc key (hex)"] = dk[:32].hex().encode()
    needles["MAC key (hex)"] = dk[32:].hex().encode()

    dd = _dontdump_mappings(child)
    record_property("dontdump_mappings_child", dd)
    assert dd, "the child has no MADV_DONTDUMP mapping (where is the KEK?)"

    cores = {}
    for name, pid in (("child", child), ("parent", parent)):
        path = str(tmp_path / ("core-%s" % name))
        ok, out = _gcore(pid, path)
        if not ok:
            if "ptrace" in out.lower() or "not permitted" in out.lower():
                pytest.skip("gcore cannot attach to pid %d: %s" % (
                    pid, out.strip()[-300:]))
            pytest.fail("gcore of %s pid %d failed:\n%s" % (name, pid,
                                                            out[-2000:]))
        cores[name] = _read_core(path)

    # control: with the excluded mappings dumped too, the KEK is there, so
    # the search can see it; its only copy is in the do-not-dump pages
    path = str(tmp_path / "core-control")
    ok, out = _gcore(child, path, include_excluded=True)
    assert ok, "control gcore failed:\n%s" % out[-2000:]
    control = _read_core(path)
    assert s.kek1 in control, ("control core (dump-excluded-mappings on) "
                               "lacks KEK1: the search would be blind")
    del control

    # control: a core taken while an upload streams in holds that upload's
    # live data key (in the cipher and MAC contexts), so the search can see
    # a data key that is there
    live = _live_data_key(s, child, tmp_path)
    record_property("live_data_key_control", live)
    assert live, "control: the data key of an upload in progress was not " \
        "found in the core; the search would be blind"

    hits = search(cores, needles)
    # nor the plaintext: the core's socket buffers it arrived in were wiped
    # once the upload had it, and the download's pieces after sending
    found = search(cores, {"plaintext marker": m})
    record_property("plaintext_marker_in_core", found)
    assert not hits, "secrets in core dumps:\n" + "\n".join(hits[:30])
    assert not found, ("plaintext in a core dump of Apache: %d hit(s), "
                       "first: %s" % (len(found), found[0][:200]))
