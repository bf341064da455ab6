"""Downloads of format v2 files: ranges (206, 416, If-Range), the strong
ETag and 304, resumed downloads, and hostile files that fail before the
first byte (500) or later (the answer cut off, never wrong bytes). v1 files
keep the whole-file answer. The files are written by tests/integration/
v2_util.py from the layout alone."""

import os
import random
import subprocess

import pytest
import requests

import secupload_harness as H
import v2_util as V

SEG = 65536
MIB = 1024 * 1024


def _get(s, fid, headers=None, method="GET"):
    return requests.request(method, s.url("/api/files/" + fid),
                            headers=headers or {}, timeout=60)


def _curl(s, fid, *args, h2=False):
    p = subprocess.run(
        ["curl", "-sS", "--max-time", "60",
         "--http2-prior-knowledge" if h2 else "--http1.1"] + list(args)
        + [s.url("/api/files/" + fid)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=90)
    return p


@pytest.fixture(scope="module")
def v2file(stack):
    plain = os.urandom(5 * SEG + 1234)
    fid, nonce, path = V.put(stack, plain)
    yield plain, fid, '"%s"' % nonce.hex()
    requests.delete(stack.url("/api/files/" + fid), timeout=60)


def test_v2_whole_file(fresh, v2file):
    plain, fid, etag = v2file
    mark = fresh.rv.audit_mark()
    r = _get(fresh, fid)
    assert r.status_code == 200
    assert r.content == plain
    assert r.headers["Accept-Ranges"] == "bytes"
    assert r.headers["ETag"] == etag
    assert r.headers["Content-Length"] == str(len(plain))
    assert "Content-Range" not in r.headers
    e = [x for x in fresh.rv.audit_since(mark) if x["event"] == "file.read"]
    assert [(x["status"], x["bytes"]) for x in e] == [("200", str(len(plain)))]


def _edges(n):
    return [(0, 0), (n - 1, n - 1), (0, n - 1), (SEG - 1, SEG), (SEG, 2 * SEG - 1),
            (SEG - 5, 3 * SEG + 5), (5 * SEG, n - 1), (17, 17), (n - 2, None),
            (3, None), (None, 1), (None, SEG + 3), (None, n), (None, n + 100),
            (n - 10, n + 100)]


def _range_header(a, b):
    if a is None:
        return "bytes=-%d" % b
    return "bytes=%d-%s" % (a, "" if b is None else b)


def _slice(plain, a, b):
    n = len(plain)
    if a is None:
        return plain[max(0, n - b):], max(0, n - b)
    end = n - 1 if b is None else min(b, n - 1)
    return plain[a:end + 1], a


def test_ranges_are_the_plaintext_slices(fresh, v2file):
    plain, fid, etag = v2file
    n = len(plain)
    rnd = random.Random(14)
    cases = _edges(n) + [tuple(sorted(rnd.sample(range(n), 2)))
                         for _ in range(25)]
    mark = fresh.rv.audit_mark()
    for a, b in cases:
        r = _get(fresh, fid, {"Range": _range_header(a, b)})
        want, start = _slice(plain, a, b)
        assert r.status_code == 206, (a, b, r.status_code)
        assert r.content == want, (a, b)
        assert r.headers["Content-Range"] == "bytes %d-%d/%d" % (
            start, start + len(want) - 1, n)
        assert r.headers["Content-Length"] == str(len(want))
        assert r.headers["ETag"] == etag
    e = [x for x in fresh.rv.audit_since(mark) if x["event"] == "file.read"]
    assert len(e) == len(cases) and all(x["status"] == "206" for x in e)


def test_curl_r_ranges(fresh, v2file, tmp_path):
    plain, fid, _ = v2file
    for a, b in [(0, 0), (SEG - 1, SEG + 1), (len(plain) - 1, len(plain) - 1),
                 (100, 4 * SEG)]:
        out = str(tmp_path / "r")
        p = _curl(fresh, fid, "-r", "%d-%d" % (a, b), "-o", out)
        assert p.returncode == 0, p.stderr
        assert open(out, "rb").read() == plain[a:b + 1]


@pytest.mark.parametrize("spec", ["bytes=%(n)d-", "bytes=%(n)d-%(m)d", "bytes=-0",
                                  "bytes=%(m)d-%(m)d"])
def test_unsatisfiable_is_416(fresh, v2file, spec):
    plain, fid, _ = v2file
    n = len(plain)
    mark = fresh.rv.audit_mark()
    r = _get(fresh, fid, {"Range": spec % {"n": n, "m": n + 10}})
    assert r.status_code == 416
    assert r.headers["Content-Range"] == "bytes */%d" % n
    assert r.json()["code"] == "range_not_satisfiable"
    e = [x for x in fresh.rv.audit_since(mark) if x["event"] == "file.read"]
    assert [(x["status"], x["reason"]) for x in e] == [
        ("416", "range_not_satisfiable")]


@pytest.mark.parametrize("spec", ["bytes=0-1,5-9", "bytes=9-2", "items=0-1",
                                  "bytes=abc", "bytes=1-2-3"])
def test_several_or_invalid_ranges_get_the_whole_file(fresh, v2file, spec):
    plain, fid, _ = v2file
    r = _get(fresh, fid, {"Range": spec})
    assert r.status_code == 200
    assert r.content == plain


def test_if_range(fresh, v2file):
    plain, fid, etag = v2file
    r = _get(fresh, fid, {"Range": "bytes=10-19", "If-Range": etag})
    assert r.status_code == 206 and r.content == plain[10:20]
    for other in ['"0123"', "W/" + etag, "Wed, 21 Oct 2015 07:28:00 GMT"]:
        r = _get(fresh, fid, {"Range": "bytes=10-19", "If-Range": other})
        assert r.status_code == 200 and r.content == plain, other


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_etag_and_304(fresh, v2file, method):
    plain, fid, etag = v2file
    for inm in [etag, "*", "W/" + etag, '"x", ' + etag]:
        mark = fresh.rv.audit_mark()
        r = _get(fresh, fid, {"If-None-Match": inm}, method)
        assert r.status_code == 304, inm
        assert r.content == b""
        assert r.headers["ETag"] == etag
        e = [x for x in fresh.rv.audit_since(mark) if x["event"] == "file.read"]
        assert [x["status"] for x in e] == ["304"]
    r = _get(fresh, fid, {"If-None-Match": '"other"'}, method)
    assert r.status_code == 200 and r.headers["ETag"] == etag
    assert r.content == (plain if method == "GET" else b"")


def test_head_with_range(fresh, v2file):
    plain, fid, _ = v2file
    r = _get(fresh, fid, {"Range": "bytes=5-"}, "HEAD")
    assert r.status_code == 206
    assert r.headers["Content-Range"] == "bytes 5-%d/%d" % (len(plain) - 1,
                                                           len(plain))
    assert r.headers["Content-Length"] == str(len(plain) - 5)


def test_curl_resumes_download(fresh, v2file, tmp_path):
    plain, fid, _ = v2file
    out = str(tmp_path / "resumed")
    for cut in [1, SEG, SEG + 7, len(plain) - 1]:
        with open(out, "wb") as f:
            f.write(plain[:cut])
        p = _curl(fresh, fid, "-C", "-", "-o", out)
        assert p.returncode == 0, p.stderr
        assert open(out, "rb").read() == plain, cut


def test_v1_file_whole_only(fresh):
    plain = os.urandom(3 * SEG)
    fid, nonce, _ = V.put(fresh, plain, version=1)
    try:
        r = _get(fresh, fid, {"Range": "bytes=0-9"})
        assert r.status_code == 200 and r.content == plain
        assert r.headers["Accept-Ranges"] == "none"
        assert r.headers["ETag"] == '"%s"' % nonce.hex()
        r = _get(fresh, fid, {"If-None-Match": '"%s"' % nonce.hex()})
        assert r.status_code == 304
    finally:
        requests.delete(fresh.url("/api/files/" + fid), timeout=60)


def test_empty_v2_file(fresh):
    fid, nonce, _ = V.put(fresh, b"")
    try:
        r = _get(fresh, fid)
        assert r.status_code == 200 and r.content == b""
        r = _get(fresh, fid, {"Range": "bytes=0-"})
        assert r.status_code == 416
        assert r.headers["Content-Range"] == "bytes */0"
    finally:
        requests.delete(fresh.url("/api/files/" + fid), timeout=60)


# ---- hostile files ----

N_HOSTILE = 6 * SEG + 100


def _swap(blob, i, j):
    b = bytearray(blob)
    a, c = V.seg_off(i), V.seg_off(j)
    L = SEG + V.OVERHEAD
    b[a:a + L], b[c:c + L] = blob[c:c + L], blob[a:a + L]
    return bytes(b)


def _drop(blob, i):
    a = V.seg_off(i)
    return blob[:a] + blob[a + SEG + V.OVERHEAD:]


def _dup(blob, i):
    a = V.seg_off(i)
    return blob[:a + SEG + V.OVERHEAD] + blob[a:]


def _last_in_middle(segs):
    """With the data key: segment 3 tagged LAST, the true end kept."""
    segs = list(segs)
    i, _f, c = segs[3]
    segs[3] = (i, V.LAST, c)
    return segs


def _no_last(segs):
    segs = list(segs)
    i, _f, c = segs[-1]
    segs[-1] = (i, V.MORE, c)
    return segs


def _hostile(stack, kind, plain, fid, nonce, blob):
    """The hostile variant kind of fid's file (blob), and whether it fails
    at open (500) rather than while sent (a cut)."""
    kek = stack.kek1
    if kind == "moved":
        return _swap(blob, 2, 3), False
    if kind == "dropped":
        return _drop(blob, 2), True        # the last segment's index moved
    if kind == "duplicated":
        return _dup(blob, 2), True
    if kind == "last-flag-in-middle":
        return V.v2_file(plain, kek, fid, nonce, edit=_last_in_middle), False
    if kind == "no-last-flag":
        return V.v2_file(plain, kek, fid, nonce, edit=_no_last), True
    if kind == "pending-end":
        return V.v2_file(plain, kek, fid, nonce, edit=lambda s: s[:-1] + [
            (s[-1][0], V.PENDING, s[-1][2])]), True
    other = V.v2_file(plain, kek, fid, os.urandom(16))
    if kind == "other-files-segment":
        a = V.seg_off(2)
        return blob[:a] + other[a:a + SEG + V.OVERHEAD] + blob[a + SEG + 48:], False
    if kind == "other-files-header":
        return other[:V.HEADER2] + blob[V.HEADER2:], True  # not the nonce recorded
    if kind == "other-id":
        return V.v2_file(plain, kek, "f" * 32, nonce), True
    if kind == "truncated":
        return blob[:V.seg_off(4)], True
    raise AssertionError(kind)


KINDS = ["moved", "dropped", "duplicated", "last-flag-in-middle", "no-last-flag",
         "pending-end", "other-files-segment", "other-files-header", "other-id",
         "truncated"]


@pytest.mark.parametrize("kind", KINDS)
def test_hostile_v2_file_never_gives_wrong_bytes(fresh, kind, tmp_path):
    plain = os.urandom(N_HOSTILE)
    fid, nonce, path = V.put(fresh, plain)
    try:
        blob = open(path, "rb").read()
        bad, at_open = _hostile(fresh, kind, plain, fid, nonce, blob)
        V.replace(path, bad)
        mark = fresh.rv.audit_mark()
        out = str(tmp_path / "body")
        p = _curl(fresh, fid, "-o", out, "-w", "%{http_code}")
        got = open(out, "rb").read() if os.path.exists(out) else b""
        status = p.stdout.decode()
        if status == "500":
            assert p.returncode == 0
        else:
            assert not at_open, "expected a 500 before any byte"
            assert status == "200"
            assert p.returncode == 18, (p.returncode, p.stderr)  # partial body
            assert len(got) < len(plain)
            assert got == plain[:len(got)], "wrong bytes were sent"
        e = [x for x in fresh.rv.audit_since(mark) if x["event"] == "file.read"]
        assert e and e[-1]["status"] == "500" and e[-1]["reason"] == "internal_error", e
        if status != "500":
            assert "SU00420" in fresh.apache.log_text()
        # a range away from the damage still works, one across it does not
        r = _get(fresh, fid, {"Range": "bytes=0-99"})
        assert r.status_code in (206, 500)
        if r.status_code == 206:
            assert r.content == plain[:100]
    finally:
        requests.delete(fresh.url("/api/files/" + fid), timeout=60)


@pytest.mark.parametrize("h2", [False, True], ids=["http1.1", "h2c"])
def test_corrupt_segment_mid_file_cuts_the_answer(fresh, h2, tmp_path):
    if h2:
        H.need_h2()
    plain = os.urandom(24 * MIB)
    fid, nonce, path = V.put(fresh, plain)
    try:
        blob = bytearray(open(path, "rb").read())
        blob[V.seg_off(200) + 500] ^= 0x40          # about 12.5 MiB in
        V.replace(path, bytes(blob))
        mark = fresh.rv.audit_mark()
        out = str(tmp_path / "body")
        p = _curl(fresh, fid, "-o", out, "-w", "%{http_code}", h2=h2)
        got = open(out, "rb").read()
        assert p.stdout.decode() == "200"
        assert p.returncode == (92 if h2 else 18), (p.returncode, p.stderr)
        assert len(got) <= 200 * SEG
        assert got == plain[:len(got)]
        e = [x for x in fresh.rv.audit_since(mark) if x["event"] == "file.read"]
        assert [(x["status"], x["reason"]) for x in e] == [
            ("200", ""), ("500", "internal_error")], e
        assert "SU00420" in fresh.apache.log_text()
        # the segments before it are still served by range
        r = _get(fresh, fid, {"Range": "bytes=%d-%d" % (SEG, 199 * SEG)})
        assert r.status_code == 206 and r.content == plain[SEG:199 * SEG + 1]
    finally:
        requests.delete(fresh.url("/api/files/" + fid), timeout=60)
