"""A download whose stored file changes under it (a `touch`, a `chmod`, a
`chown -R` of the storage directory by an admin) is cut off: the bytes after
the change were never verified. The cut must reach the client as a broken
answer, on HTTP/1.1 (no clean end of the Content-Length body) and on HTTP/2
(the stream reset), and never leave it waiting. Repeated, to catch a race."""

import os
import subprocess
import time

import pytest
import requests

import secupload_harness as H

MIB = 1024 * 1024
RUNS = 6


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


@pytest.mark.parametrize("h2", [False, True], ids=["http1.1", "h2c"])
@pytest.mark.parametrize("change", ["touch", "chmod"])
def test_changed_file_cuts_download_off(fresh, tmp_path, h2, change):
    if h2:
        H.need_h2()
    data = os.urandom(24 * MIB)
    r = requests.post(fresh.url(), data=data, timeout=120,
                      headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    fid = r.json()["id"]
    path = _enc_path(fresh.site.storage, fid)
    mark = fresh.rv.audit_mark()
    try:
        for run in range(RUNS):
            out = str(tmp_path / ("body%d" % run))
            p = _get_slowly(fresh, fid, h2, out)
            time.sleep(0.4 + 0.05 * run)
            if change == "touch":
                os.utime(path)
            else:
                os.chmod(path, 0o600)
            started = time.monotonic()
            try:
                so, se = p.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.communicate()
                pytest.fail("run %d: the client was left waiting after the "
                            "cut" % run)
            waited = time.monotonic() - started
            got = os.path.getsize(out) if os.path.exists(out) else 0
            assert p.returncode != 0, (
                "run %d: curl saw a complete answer (%s) of %d bytes" %
                (run, so.decode(), got))
            assert got < len(data), "run %d: the whole body arrived" % run
            assert waited < 20, "run %d: the cut took %.1f s" % (run, waited)
    finally:
        requests.delete(fresh.url("/api/files/" + fid), timeout=60)
    entries = [e for e in fresh.rv.audit_since(mark)
               if e.get("event") == "file.read" and e.get("status") == "500"]
    assert len(entries) == RUNS, entries
