"""The server side failing under an upload: disk full (507), storage not
writable (500), Redis refusing writes or stalling (503). Every one of them
must leave no file and no metadata. Own Apache and Redis, with the storage dir
on a 1 MiB tmpfs and a short Redis timeout."""

import os
import secrets
import signal
import subprocess
import time

import pytest

import secupload_harness as H
from secupload_stack import Stack, running

TIMEOUT_MS = 500


def _mount_small_tmpfs(path):
    if not H.is_root():
        return "needs root to mount a tmpfs"
    uid = H.server_uid()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o",
                        "size=1m,mode=0700,uid=%d,gid=%d" % (uid, uid),
                        "secupload-itest", path], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=30)
    if p.returncode != 0:
        return "cannot mount a tmpfs here: %s" % p.stdout.decode().strip()
    return None


@pytest.fixture(scope="module")
def fs(module_so, request):
    s = Stack("fail", redis_timeout=TIMEOUT_MS)
    why = _mount_small_tmpfs(s.site.storage)
    s.mounted = why is None
    s.no_mount_reason = why
    if s.mounted:
        s.on_stop.append(lambda: subprocess.run(
            ["umount", s.site.storage], timeout=30))
    yield from running(request, s)


def test_disk_full_is_507(fs):
    if not fs.mounted:
        pytest.skip(fs.no_mount_reason)
    big = secrets.token_bytes(2 * 1024 * 1024)
    fs.expect_error(lambda: fs.post_raw(big), 507, "insufficient_storage")
    body, ctype = H.multipart([H.file_part(big, "full.bin")])
    fs.expect_error(lambda: fs.post(body, {"Content-Type": ctype}), 507,
                    "insufficient_storage")
    # space is back: a file that fits is stored
    small = secrets.token_bytes(100 * 1024)
    fs.check_stored(fs.post_raw(small), small)


def test_disk_full_chunked_is_507(fs):
    if not fs.mounted:
        pytest.skip(fs.no_mount_reason)
    data = secrets.token_bytes(2 * 1024 * 1024)

    def send():
        c = H.RawConn(fs.apache.port)
        try:
            c.send(H.request_head("POST", "/api/upload/", [
                ("Content-Type", "application/octet-stream"),
                ("Transfer-Encoding", "chunked"), ("Connection", "close")]))
            c.try_send(H.chunked(data, [32768]))
            return c.read_response()
        finally:
            c.close()
    fs.expect_error(send, 507, "insufficient_storage")


def _set_modes(root, mode):
    os.chmod(root, mode)
    for name in os.listdir(root):
        full = os.path.join(root, name)
        if os.path.isdir(full):
            os.chmod(full, mode)


def test_storage_not_writable_is_500(fs):
    storage = fs.site.storage
    _set_modes(storage, 0o500)
    try:
        resp, doc = fs.expect_error(
            lambda: fs.post_raw(secrets.token_bytes(5000)), 500,
            "internal_error")
        assert storage not in resp.text, "internal detail in the body"
        assert "Permission" not in resp.text and "EACCES" not in resp.text
    finally:
        _set_modes(storage, 0o700)
    data = secrets.token_bytes(5000)
    fs.check_stored(fs.post_raw(data), data)


def test_redis_refusing_writes_is_503(fs):
    """Redis answers, but every write fails (OOM): the file already written
    must be taken back."""
    r = fs.redis.client()
    old = r.config_get("maxmemory")["maxmemory"]
    r.config_set("maxmemory-policy", "noeviction")
    r.config_set("maxmemory", "1")
    try:
        for data in (secrets.token_bytes(10), secrets.token_bytes(300000)):
            resp, _ = fs.expect_error(lambda: fs.post_raw(data), 503,
                                      "unavailable", audit=False)
            ra = resp.headers.get("Retry-After", "")
            assert ra.strip().isdigit(), "Retry-After: %r" % ra
    finally:
        r.config_set("maxmemory", old)
    data = secrets.token_bytes(1000)
    fs.check_stored(fs.post_raw(data), data)


def test_redis_stalled_times_out_and_keeps_nothing(fs):
    """Redis stops answering (SIGSTOP): 503 within about the timeout, and
    once it wakes up the commands it had queued must not bring metadata
    for a file that was never kept."""
    # make sure pooled connections exist, so the stall hits one mid-use
    for _ in range(4):
        d = secrets.token_bytes(100)
        fs.check_stored(fs.post_raw(d), d)
    files_before = fs.files()
    keys_before = fs.rv.file_keys()
    pid = fs.redis.proc.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        for _ in range(2):
            t0 = time.monotonic()
            resp = fs.post_raw(secrets.token_bytes(2000))
            took = time.monotonic() - t0
            assert resp.status_code == 503, (resp.status_code, resp.text)
            assert resp.json().get("code") == "unavailable"
            assert resp.headers.get("Retry-After")
            # connect + a few commands, each bounded by the timeout
            assert took < 10 * TIMEOUT_MS / 1000.0 + 2, took
    finally:
        os.kill(pid, signal.SIGCONT)
    time.sleep(1.0)  # let Redis run whatever it had buffered
    assert fs.files() == files_before
    orphans = sorted(fs.rv.file_keys() - keys_before)
    # awake again: uploads work (no reply read out of step)
    for i in range(8):
        data = secrets.token_bytes(1500 + i)
        fs.check_stored(fs.post_raw(data), data)
    assert not orphans, "metadata without a file, written by commands " \
        "Redis ran after the 503: %r" % orphans
