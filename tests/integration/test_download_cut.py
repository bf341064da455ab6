"""A download whose stored file changes under it. A version 1 file is
verified whole before its first byte, so any change to it afterwards (a
`touch`, a `chmod`, a `chown -R` of the storage directory by an admin: the
reader cannot tell them from a write) cuts the download off: the bytes
after the change were never verified. A version 2 file's segments are each
verified as they are sent, so a change of its times or mode leaves the
download whole, and a segment written to in place cuts it. The cut must
reach the client as a broken answer, on HTTP/1.1 (no clean end of the
Content-Length body) and on HTTP/2 (the stream reset), and never leave it
waiting. Repeated, to catch a race."""

import os
import subprocess
import time

import pytest
import requests

import secupload_harness as H
from secupload_stack import Stack, running

MIB = 1024 * 1024
RUNS = 6
H2 = pytest.mark.parametrize("h2", [False, True], ids=["http1.1", "h2c"])


@pytest.fixture(scope="module")
def stack_v1(module_so, request):
    s = Stack("cut-v1", format_version=1)
    yield from running(request, s)


@pytest.fixture
def fresh_v2(fresh):
    if fresh.format_version == 1:
        pytest.skip("SECUPLOAD_UPLOAD_FORMAT=1: no version 2 server")
    return fresh


def _enc_path(storage, fid):
    return os.path.join(storage, fid[:2], fid + ".enc")


def _get_slowly(s, fid, h2, out):
    """curl, reading at a limited rate so the download lasts seconds."""
    return subprocess.Popen(
        ["curl", "-sS", "--max-time", "60", "--limit-rate", "4M", "-o", out,
         "-w", "%{http_code} %{size_download}",
         "--http2-prior-knowledge" if h2 else "--http1.1",
         s.url("/api/files/" + fid)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _upload(s, data, magic):
    r = requests.post(s.url(), data=data, timeout=120,
                      headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    fid = r.json()["id"]
    with open(_enc_path(s.site.storage, fid), "rb") as f:
        assert f.read(8) == magic
    return fid


def _flip(path, off):
    """A byte of the file changed in place (the same inode, as a write by
    another process would)."""
    with open(path, "r+b") as f:
        f.seek(off)
        b = f.read(1)
        f.seek(off)
        f.write(bytes([b[0] ^ 0x01]))


def _runs(s, fid, h2, tmp_path, change, undo=lambda: None, runs=RUNS):
    """Slow downloads, change() made during each; [(curl's exit, its -w
    output, the body)]."""
    got = []
    for run in range(runs):
        out = str(tmp_path / ("body%d" % run))
        p = _get_slowly(s, fid, h2, out)
        time.sleep(0.4 + 0.05 * run)
        change()
        started = time.monotonic()
        try:
            so, _se = p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            pytest.fail("run %d: the client was left waiting" % run)
        finally:
            undo()
        waited = time.monotonic() - started
        assert waited < 20, "run %d: the answer took %.1f s" % (run, waited)
        with open(out, "rb") as f:
            got.append((p.returncode, so.decode(), f.read()))
    return got


def _read_entries(s, mark, status):
    return [e for e in s.rv.audit_since(mark)
            if e.get("event") == "file.read" and e.get("status") == status]


def _change(path, how):
    if how == "touch":
        return lambda: os.utime(path)
    return lambda: os.chmod(path, 0o600)


@H2
@pytest.mark.parametrize("change", ["touch", "chmod"])
def test_changed_v1_file_cuts_download_off(stack_v1, tmp_path, h2, change):
    if h2:
        H.need_h2()
    s = stack_v1
    data = os.urandom(24 * MIB)
    fid = _upload(s, data, H.MAGIC)
    path = _enc_path(s.site.storage, fid)
    mark = s.rv.audit_mark()
    try:
        for run, (rc, so, body) in enumerate(
                _runs(s, fid, h2, tmp_path, _change(path, change))):
            assert rc != 0, ("run %d: curl saw a complete answer (%s) of %d "
                             "bytes" % (run, so, len(body)))
            assert len(body) < len(data), "run %d: the whole body arrived" % run
            assert body == data[:len(body)], "run %d: wrong bytes" % run
    finally:
        requests.delete(s.url("/api/files/" + fid), timeout=60)
    entries = _read_entries(s, mark, "500")
    assert len(entries) == RUNS, entries
    assert "SU00041" in s.apache.log_text()


@H2
@pytest.mark.parametrize("change", ["touch", "chmod"])
def test_v2_file_times_or_mode_changed_download_whole(fresh_v2, tmp_path, h2,
                                                      change):
    """The segments are verified as they are read: a change of the file's
    times or mode (its bytes the same) does not cut the download."""
    if h2:
        H.need_h2()
    s = fresh_v2
    data = os.urandom(12 * MIB)     # 3 s at curl's rate: the change is made
    fid = _upload(s, data, H.MAGIC2)  # while it runs
    path = _enc_path(s.site.storage, fid)
    mark = s.rv.audit_mark()
    try:
        for run, (rc, so, body) in enumerate(
                _runs(s, fid, h2, tmp_path, _change(path, change), runs=2)):
            assert rc == 0 and so == "200 %d" % len(data), (run, rc, so)
            assert body == data, "run %d: the body differs" % run
    finally:
        requests.delete(s.url("/api/files/" + fid), timeout=60)
    assert not _read_entries(s, mark, "500")
    assert len(_read_entries(s, mark, "200")) == 2


@H2
def test_v2_segment_written_during_download_cuts_it_off(fresh_v2, tmp_path,
                                                        h2):
    """A byte of a segment far ahead of what was sent changed in place while
    the answer streams (and put back after each run): that segment fails
    its verification, the answer is cut there, and what came before it is
    the plaintext."""
    if h2:
        H.need_h2()
    s = fresh_v2
    data = os.urandom(24 * MIB)
    fid = _upload(s, data, H.MAGIC2)
    path = _enc_path(s.site.storage, fid)
    seg = 320    # 20 MiB in: beyond what socket buffers can have read ahead
    off = H.HEADER2_LEN + seg * (65536 + H.SEG_OVERHEAD) + 1000
    mark = s.rv.audit_mark()
    try:
        for run, (rc, so, body) in enumerate(
                _runs(s, fid, h2, tmp_path, lambda: _flip(path, off),
                      lambda: _flip(path, off), runs=3)):
            assert rc != 0, ("run %d: curl saw a complete answer (%s) of %d "
                             "bytes" % (run, so, len(body)))
            assert len(body) <= seg * 65536, (run, len(body))
            assert body == data[:len(body)], "run %d: wrong bytes" % run
        r = requests.get(s.url("/api/files/" + fid), timeout=60)
        assert r.status_code == 200 and r.content == data
    finally:
        requests.delete(s.url("/api/files/" + fid), timeout=60)
    assert len(_read_entries(s, mark, "500")) == 3
    assert "SU00420" in s.apache.log_text()
