"""A client that hangs up mid-body gets nothing and leaves nothing."""

import secrets
import subprocess
import time

import pytest

import secupload_harness as H

DECLARED = 10 * 1024 * 1024
SENT = 1024 * 1024


def _hang_up(stack, head, body, reset):
    files_before = stack.files()
    keys_before = stack.rv.file_keys()
    c = H.RawConn(stack.apache.port)
    c.send(head)
    c.send(body)
    # the upload is under way once its temp file shows up; closing before
    # that would test nothing
    started = H._wait_for(lambda: stack.files() != files_before, 5.0)
    c.close(reset=reset)
    # settle: the temp file must go, and stay gone
    gone = H._wait_for(lambda: stack.files() == files_before, 5.0)
    time.sleep(0.3)
    after = stack.files()
    assert gone and after == files_before, "left in storage: %r" % sorted(
        set(after) - set(files_before))
    assert stack.rv.file_keys() == keys_before
    assert started, "no temp file appeared while the body was streaming in"
    # the server is still fine
    data = secrets.token_bytes(1000)
    stack.check_stored(stack.post(data, {"Content-Type": "text/plain"}), data)


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
def test_hang_up_raw(fresh, reset):
    head = H.request_head("POST", "/api/upload/", [
        ("Content-Type", "application/octet-stream"),
        ("Content-Length", str(DECLARED))])
    _hang_up(fresh, head, secrets.token_bytes(SENT), reset)


def test_hang_up_multipart(fresh):
    body, ctype = H.multipart([H.file_part(secrets.token_bytes(DECLARED),
                                           "gone.bin")])
    head = H.request_head("POST", "/api/upload/", [
        ("Content-Type", ctype), ("Content-Length", str(len(body)))])
    _hang_up(fresh, head, body[:SENT], False)


def test_hang_up_chunked(fresh):
    head = H.request_head("POST", "/api/upload/", [
        ("Content-Type", "application/octet-stream"),
        ("Transfer-Encoding", "chunked")])
    body = H.chunked(secrets.token_bytes(SENT), [65536])
    body = body[:-len(b"0\r\n\r\n")]  # never the last chunk
    _hang_up(fresh, head, body, False)


def test_hang_up_h1_expect_before_body(fresh):
    """Gone after the headers: nothing was ever stored."""
    files_before = fresh.files()
    c = H.RawConn(fresh.apache.port)
    c.send(H.request_head("POST", "/api/upload/", [
        ("Content-Type", "application/octet-stream"),
        ("Content-Length", "5000"), ("Expect", "100-continue")]))
    status, _, _ = c.read_head()
    assert status == 100
    c.close()
    time.sleep(0.5)
    assert fresh.files() == files_before


def test_hang_up_h2(fresh, tmp_path):
    """An HTTP/2 client that gives up mid-stream (curl --max-time)."""
    H.need_h2()
    src = tmp_path / "big.bin"
    src.write_bytes(secrets.token_bytes(DECLARED))
    files_before = fresh.files()
    keys_before = fresh.rv.file_keys()
    curl = subprocess.Popen(
        ["curl", "-sS", "-o", "/dev/null", "--http2-prior-knowledge",
         "--limit-rate", "2M", "--max-time", "1.5", "--data-binary",
         "@%s" % src, "-H", "Content-Type: application/octet-stream",
         fresh.url()], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        started = H._wait_for(lambda: fresh.files() != files_before, 5.0)
        rc = curl.wait(timeout=30)
    finally:
        if curl.poll() is None:
            curl.kill()
            curl.wait()
    assert rc == 28, "curl did not time out mid-upload (exit %d)" % rc
    gone = H._wait_for(lambda: fresh.files() == files_before, 5.0)
    time.sleep(0.3)
    assert gone and fresh.files() == files_before, sorted(
        set(fresh.files()) - set(files_before))
    assert fresh.rv.file_keys() == keys_before
    assert started, "no temp file appeared while the body was streaming in"
