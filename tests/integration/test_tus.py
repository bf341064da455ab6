"""Resumable uploads: the tus 1.0 protocol (core, creation,
creation-with-upload, termination, expiration, checksum) at
SetHandler secupload-tus, every rule and refusal, with what is kept."""

import base64
import hashlib
import os
import socket
import time

import pytest
import requests

import secupload_harness as H
import tus_util as T
from secupload_stack import Stack, running


@pytest.fixture(scope="module")
def ts(module_so, request):
    s = Stack("tus", extra=T.locations(expire=2))
    yield from running(request, s)


def _new(ts, length, path="/api/tus/", **kw):
    r = T.create(ts, length, path=path, **kw)
    assert r.status_code == 201, r.text
    assert r.headers["Tus-Resumable"] == "1.0.0"
    return T.tus_url(ts, r), r


def test_options_names_the_protocol(ts):
    r = requests.options(ts.url("/api/tus/"), timeout=10)
    assert r.status_code == 204, r.text
    assert r.headers["Tus-Resumable"] == "1.0.0"
    assert r.headers["Tus-Version"] == "1.0.0"
    assert set(r.headers["Tus-Extension"].split(",")) == {
        "creation", "creation-with-upload", "termination", "expiration",
        "checksum"}
    assert "sha256" in r.headers["Tus-Checksum-Algorithm"].split(",")
    assert r.headers["Tus-Max-Size"] == str(1 << 30)
    r = requests.options(ts.url("/tus-small/"), timeout=10)
    assert r.headers["Tus-Max-Size"] == "1024"


def test_upload_in_pieces_is_stored_as_one_shot(ts):
    plain = os.urandom(3 * 65536 + 12345)
    url, r = _new(ts, len(plain), headers={
        "Upload-Metadata": T.metadata(filename="C:\\x\\report.pdf",
                                      filetype="application/pdf")})
    fid = T.upload_id(url)
    assert r.headers["Upload-Offset"] == "0"
    assert r.headers["Upload-Expires"].endswith("GMT")
    assert os.path.exists(T.tus_file(ts, fid))
    h = T.head(url)
    assert h.status_code == 200 and h.headers["Upload-Offset"] == "0"
    assert h.headers["Upload-Length"] == str(len(plain))
    assert h.headers["Cache-Control"] == "no-store"
    assert "filename" in h.headers["Upload-Metadata"]
    # cuts inside segments, on a boundary, and one byte at a time
    cuts = [0, 1000, 65536, 65537, 65538, 200000, len(plain)]
    for a, b in zip(cuts, cuts[1:]):
        r = T.patch(url, a, plain[a:b])
        assert r.status_code == 204, r.text
        assert r.headers["Upload-Offset"] == str(b)
        if b < len(plain):
            assert T.head(url).headers["Upload-Offset"] == str(b)
            # between requests: whole segments only on disk, no plaintext
            size = os.path.getsize(T.tus_file(ts, fid))
            assert size == 140 + (b // 65536) * (65536 + 48)
    assert r.headers["X-Secupload-Id"] == fid
    T.check_stored(ts, fid, plain, name="report.pdf", ctype="application/pdf")
    # the answer to the last PATCH was lost: HEAD and the same PATCH again
    h = T.head(url)
    assert h.status_code == 200 and h.headers["Upload-Offset"] == str(len(plain))
    r = T.patch(url, len(plain), b"")
    assert r.status_code == 204 and r.headers["X-Secupload-Id"] == fid
    meta = requests.get(ts.url("/api/files/%s/meta" % fid), timeout=10).json()
    assert meta["sha256"] == hashlib.sha256(plain).hexdigest()


def test_exact_segment_multiple_and_empty(ts):
    for plain in (os.urandom(2 * 65536), b""):
        url, r = _new(ts, len(plain))
        if plain:
            assert T.patch(url, 0, plain).status_code == 204
        else:
            assert r.headers["X-Secupload-Id"] == T.upload_id(url)
        T.check_stored(ts, T.upload_id(url), plain)


def test_creation_with_upload(ts):
    plain = os.urandom(100000)
    r = T.create(ts, len(plain), body=plain[:70000])
    assert r.status_code == 201, r.text
    assert r.headers["Upload-Offset"] == "70000"
    url = T.tus_url(ts, r)
    assert T.patch(url, 70000, plain[70000:]).status_code == 204
    T.check_stored(ts, T.upload_id(url), plain)
    r = T.create(ts, 5000, body=b"z" * 5000)
    assert r.status_code == 201 and r.headers["Upload-Offset"] == "5000"
    T.check_stored(ts, r.headers["X-Secupload-Id"], b"z" * 5000)


def _refused(ts, send, status, code, fid=None, audit=True):
    mark = ts.rv.audit_mark()
    before = ts.files()
    r = send()
    assert r.status_code == status, r.text
    assert r.headers["Tus-Resumable"] == "1.0.0"
    if r.request.method != "HEAD":
        doc = r.json()
        assert doc["status"] == "error" and doc["code"] == code, doc
    if fid is None:
        assert ts.files() == before, "kept: %r" % (set(ts.files()) - set(before))
    if audit:
        e = H._wait_for(lambda: [e for e in ts.rv.audit_since(mark)
                                 if e.get("event") == "upload.rejected"], 2)
        assert e and e[-1]["reason"] == code and e[-1]["status"] == str(status)
    return r


def test_creation_refusals_keep_nothing(ts):
    keys = ts.rv.file_keys()
    _refused(ts, lambda: T.create(ts, 2000, path="/tus-small/"), 413, "too_large")
    _refused(ts, lambda: T.create(ts, 10, path="/tus-typed/", headers={
        "Upload-Metadata": T.metadata(filetype="text/html")}),
        415, "unsupported_type")
    _refused(ts, lambda: requests.post(ts.url("/api/tus/"), headers=T.TUS,
                                       timeout=10), 400, "bad_request")
    _refused(ts, lambda: T.create(ts, 10, headers={"Upload-Defer-Length": "1"}),
             400, "bad_request")
    _refused(ts, lambda: T.create(ts, 10, headers={"Upload-Metadata": "a b c"}),
             400, "bad_request")
    _refused(ts, lambda: T.create(ts, 10, body=b"x" * 11), 413, "too_large")
    _refused(ts, lambda: requests.post(ts.url("/api/tus/"), timeout=10,
                                       headers={"Upload-Length": "5"}),
             412, "version", audit=False)
    r = _refused(ts, lambda: T.create(ts, 5, headers={"Tus-Resumable": "0.2.2"}),
                 412, "version", audit=False)
    assert r.headers["Tus-Version"] == "1.0.0"
    assert ts.rv.file_keys() == keys
    c = ts.redis.client(db=ts.redis_db)
    assert not [k for k in c.keys(ts.prefix + "tus:*")
                if not c.hget(k, "done")], "state of refused uploads kept"
    # an image is accepted where only images are
    url, _ = _new(ts, 3, path="/tus-typed/", headers={
        "Upload-Metadata": T.metadata(filename="a.png", filetype="image/png")})
    assert T.patch(url, 0, b"png").status_code == 204
    T.check_stored(ts, T.upload_id(url), b"png", name="a.png", ctype="image/png")


def test_metadata_pair_of_spaces_refused(ts):
    """A pair of spaces alone between commas has no key: 400, nothing kept."""
    keys = ts.rv.file_keys()
    for md in ["filename YQ==,  ,filetype YQ==", "x,   ,y"]:
        _refused(ts, lambda: T.create(ts, 10, headers={"Upload-Metadata": md}),
                 400, "bad_request")
    assert ts.rv.file_keys() == keys


def _size(ts, fid):
    return os.path.getsize(T.tus_file(ts, fid))


def test_patch_refusals_leave_upload_as_it_was(ts):
    plain = os.urandom(150000)
    url, _ = _new(ts, len(plain))
    fid = T.upload_id(url)
    assert T.patch(url, 0, plain[:70000]).status_code == 204
    size = _size(ts, fid)
    ok = base64.b64encode(hashlib.sha256(plain[70000:90000]).digest()).decode()
    bad = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    cases = [
        (lambda: T.patch(url, 1000, plain[1000:2000]), 409, "offset_mismatch"),
        (lambda: T.patch(url, 70000, plain[70000:90000],
                         {"Content-Type": "application/octet-stream"}),
         415, "unsupported_type"),
        (lambda: T.patch(url, 70000, b"x" * 80001), 413, "too_large"),
        (lambda: T.patch(url, 70000, plain[70000:90000],
                         {"Upload-Checksum": "sha256 " + bad}),
         460, "checksum_mismatch"),
        (lambda: T.patch(url, 70000, plain[70000:90000],
                         {"Upload-Checksum": "crc32 AAAA"}), 400, "bad_request"),
        (lambda: T.patch(url, 70000, plain[70000:90000],
                         {"Tus-Resumable": "2.0.0"}), 412, "version"),
        (lambda: T.patch(url, "x", b"1"), 400, "bad_request"),
    ]
    for send, status, code in cases:
        _refused(ts, send, status, code, fid=fid, audit=status != 412)
        assert _size(ts, fid) == size, code
        assert T.head(url).headers["Upload-Offset"] == "70000", code
    # a body past the length, sent chunked (no length declared)
    r = T.patch(url, 70000, iter([b"y" * 80000, b"y" * 1000]))
    assert r.status_code == 413
    assert T.head(url).headers["Upload-Offset"] == "70000"
    r = T.patch(url, 70000, plain[70000:90000], {"Upload-Checksum": "sha256 " + ok})
    assert r.status_code == 204 and r.headers["Upload-Offset"] == "90000"
    assert T.patch(url, 90000, plain[90000:]).status_code == 204
    T.check_stored(ts, fid, plain)


def test_unknown_upload_is_404(ts):
    url = ts.url("/api/tus/" + "ab" * 16)
    assert T.head(url).status_code == 404
    _refused(ts, lambda: T.patch(url, 0, b"x"), 404, "not_found", fid=1,
             audit=False)
    _refused(ts, lambda: requests.delete(url, headers=T.TUS, timeout=10), 404,
             "not_found", audit=False)
    assert T.head(ts.url("/api/tus/nothex")).status_code == 404


def test_termination_leaves_nothing(ts):
    url, _ = _new(ts, 200000)
    fid = T.upload_id(url)
    assert T.patch(url, 0, os.urandom(100000)).status_code == 204
    mark = ts.rv.audit_mark()
    r = requests.delete(url, headers=T.TUS, timeout=10)
    assert r.status_code == 204, r.text
    T.assert_gone(ts, fid)
    assert [e for e in ts.rv.audit_since(mark)
            if e.get("event") == "upload.terminated" and e.get("id") == fid]
    assert T.head(url).status_code == 404
    assert T.patch(url, 100000, b"x").status_code == 404


def test_expired_upload_is_removed(ts):
    url, r = _new(ts, 200000, path="/tus-short/")
    fid = T.upload_id(url)
    assert T.patch(url, 0, os.urandom(70000)).status_code == 204
    mark = ts.rv.audit_mark()
    # the watchdog removes it within a second or two of its expiry
    assert H._wait_for(lambda: not os.path.exists(T.tus_file(ts, fid)), 8)
    assert H._wait_for(lambda: T.tus_keys(ts, fid) == [], 2)
    T.assert_gone(ts, fid)
    e = [e for e in ts.rv.audit_since(mark)
         if e.get("event") == "upload.expired" and e.get("id") == fid]
    assert e and e[0]["bytes"] == "70000", e
    assert T.head(url).status_code == 404
    assert "SU00465" in ts.apache.log_text()


def test_request_extends_expiry(ts):
    url, _ = _new(ts, 200000, path="/tus-short/")
    for i in range(3):
        time.sleep(1.0)
        r = T.patch(url, i * 1000, b"k" * 1000)
        assert r.status_code == 204, r.text
    assert T.head(url).headers["Upload-Offset"] == "3000"
    requests.delete(url, headers=T.TUS, timeout=10)


def test_cut_patch_keeps_exact_bytes(ts):
    plain = os.urandom(300000)
    url, _ = _new(ts, len(plain))
    fid = T.upload_id(url)
    path = url[len(ts.apache.base):]
    s = socket.create_connection(("127.0.0.1", ts.apache.port), timeout=10)
    s.sendall(("PATCH %s HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n"
               "Upload-Offset: 0\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
               % (path, T.CTYPE, len(plain))).encode())
    s.sendall(plain[:123457])
    time.sleep(0.3)
    s.close()
    got = H._wait_for(lambda: T.head(url).headers["Upload-Offset"] == "123457", 5)
    assert got, T.head(url).headers
    assert _size(ts, fid) == 140 + (123457 // 65536) * (65536 + 48)
    assert T.patch(url, 123457, plain[123457:]).status_code == 204
    T.check_stored(ts, fid, plain)


def test_concurrent_patch_is_423(ts):
    plain = os.urandom(100000)
    url, _ = _new(ts, len(plain))
    path = url[len(ts.apache.base):]
    s = socket.create_connection(("127.0.0.1", ts.apache.port), timeout=10)
    s.sendall(("PATCH %s HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n"
               "Upload-Offset: 0\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
               % (path, T.CTYPE, len(plain))).encode())
    s.sendall(plain[:1000])
    time.sleep(0.5)
    r = _refused(ts, lambda: T.patch(url, 0, plain), 423, "locked", fid=1,
                 audit=False)
    s.sendall(plain[1000:])
    assert b" 204 " in s.recv(4096)
    s.close()
    assert r.status_code == 423
    T.check_stored(ts, T.upload_id(url), plain)


def test_restart_in_the_middle(ts):
    plain = os.urandom(500000)
    url, _ = _new(ts, len(plain))
    assert T.patch(url, 0, plain[:200001]).status_code == 204
    ts.apache.stop()
    ts.apache.start()
    assert T.head(url).headers["Upload-Offset"] == "200001"
    assert T.patch(url, 200001, plain[200001:]).status_code == 204
    T.check_stored(ts, T.upload_id(url), plain)


def test_get_and_methods(ts):
    r = requests.get(ts.url("/api/tus/"), headers=T.TUS, timeout=10)
    assert r.status_code == 405 and "PATCH" in r.headers["Allow"]


def _fsck(ts, *args):
    cli = os.environ.get("SECUPLOAD_CLI") or os.path.join(
        os.path.dirname(os.path.dirname(os.path.dirname(
            os.path.abspath(__file__)))), "secupload")
    import subprocess
    r = subprocess.run([cli, "fsck", "--storage", ts.site.storage, "--redis",
                        "127.0.0.1:%d" % ts.redis.port, "--prefix", ts.prefix]
                       + list(args), stdout=subprocess.PIPE, text=True,
                       timeout=60)
    return r.returncode, r.stdout.splitlines()


def test_fsck_lists_and_repairs_expired_uploads(ts):
    live, _ = _new(ts, 100000)
    url, _ = _new(ts, 100000, path="/tus-short/")
    fid = T.upload_id(url)
    assert T.patch(url, 0, os.urandom(70000)).status_code == 204
    # no server to expire it: fsck finds it, and --repair removes it
    ts.apache.stop()
    try:
        time.sleep(2.5)
        rc, lines = _fsck(ts)
        assert "tus-upload " + T.upload_id(live) in lines, lines
        assert "tus-expired " + fid in lines and rc == 1, lines
        assert os.path.exists(T.tus_file(ts, fid))
        rc, lines = _fsck(ts, "--repair")
        assert [l for l in lines if l.startswith("removed ") and fid in l], lines
        T.assert_gone(ts, fid)
        assert os.path.exists(T.tus_file(ts, T.upload_id(live)))
    finally:
        ts.apache.start()
    requests.delete(live, headers=T.TUS, timeout=10)
    T.assert_gone(ts, T.upload_id(live))


def test_startup_sweep_keeps_live_uploads(ts):
    url, _ = _new(ts, 100000)
    assert T.patch(url, 0, b"s" * 5000).status_code == 204
    ts.apache.stop()
    ts.apache.start()
    assert os.path.exists(T.tus_file(ts, T.upload_id(url)))
    assert T.patch(url, 5000, b"s" * 95000).status_code == 204
    T.check_stored(ts, T.upload_id(url), b"s" * 100000)


def test_cors_preflight_and_tus_options(ts):
    origin = {"Origin": "http://app.example"}
    r = requests.options(ts.url("/tus-cors/"), timeout=10, headers=dict(origin, **{
        "Access-Control-Request-Method": "PATCH",
        "Access-Control-Request-Headers": "tus-resumable,upload-offset,content-type"}))
    assert r.status_code == 204
    assert r.headers["Access-Control-Allow-Origin"] == "http://app.example"
    assert "PATCH" in r.headers["Access-Control-Allow-Methods"]
    allowed = r.headers["Access-Control-Allow-Headers"].lower()
    for h in ("tus-resumable", "upload-offset", "upload-length", "upload-metadata",
              "upload-checksum"):
        assert h in allowed, allowed
    # not a preflight: the protocol's own OPTIONS
    r = requests.options(ts.url("/tus-cors/"), headers=origin, timeout=10)
    assert r.status_code == 204 and r.headers["Tus-Version"] == "1.0.0"
    r = T.create(ts, 10, path="/tus-cors/", headers=origin)
    assert r.status_code == 201
    exposed = r.headers["Access-Control-Expose-Headers"].lower()
    for h in ("location", "upload-offset", "upload-length", "upload-expires",
              "tus-resumable", "tus-version"):
        assert h in exposed, exposed
    requests.delete(T.tus_url(ts, r), headers=T.TUS, timeout=10)


def test_finished_upload_read_back(ts):
    plain = os.urandom(200000)
    r = T.create(ts, len(plain), body=plain)
    fid = r.headers["X-Secupload-Id"]
    g = requests.get(ts.url("/api/files/" + fid), timeout=30)
    assert g.status_code == 200, g.text
    assert hashlib.sha256(g.content).hexdigest() == \
        hashlib.sha256(plain).hexdigest()
