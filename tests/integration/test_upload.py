"""Uploads over HTTP/1.1 with Content-Length: what a 201 promises
(docs/api.md, docs/format.md) and what every error leaves behind (nothing)."""

import base64
import hashlib
import json
import secrets

import pytest
import requests

import secupload_harness as H

SIZES = [0, 1, 15, 16, 17, 65535, 65536, 65537]


# ---------------------------------------------------------------- successes

@pytest.mark.parametrize("size", SIZES)
def test_raw_sizes(fresh, size):
    data = secrets.token_bytes(size)
    r = fresh.post(data, {"Content-Type": "application/octet-stream",
                          "Content-Disposition":
                              'attachment; filename="raw-%d.bin"' % size})
    fresh.check_stored(r, data, name="raw-%d.bin" % size,
                       content_type="application/octet-stream",
                       body_len=size)


@pytest.mark.parametrize("size", SIZES)
def test_multipart_sizes(fresh, size):
    data = secrets.token_bytes(size)
    r, body = fresh.post_multipart([H.file_part(data, "mp-%d.bin" % size)])
    fresh.check_stored(r, data, name="mp-%d.bin" % size,
                       content_type="application/octet-stream",
                       body_len=len(body))


def test_raw_5mib(fresh):
    data = secrets.token_bytes(5 * 1024 * 1024)
    r = fresh.post(data, {"Content-Type": "application/x-big",
                          "Content-Disposition":
                              'attachment; filename="big.bin"'})
    fresh.check_stored(r, data, name="big.bin",
                       content_type="application/x-big", body_len=len(data))


def test_multipart_5mib(fresh):
    data = secrets.token_bytes(5 * 1024 * 1024)
    r, body = fresh.post_multipart([H.file_part(data, "big.bin",
                                                "application/zip")])
    fresh.check_stored(r, data, name="big.bin",
                       content_type="application/zip", body_len=len(body))


def test_multipart_fields_around_file(fresh):
    data = b"the file itself\r\n--not a boundary\r\n" * 10
    parts = [H.field_part("title", "A title"),
             H.field_part("description", "x" * 5000),
             H.file_part(data, "report.pdf", "application/pdf"),
             H.field_part("after", "ignored too")]
    r, body = fresh.post_multipart(parts, preamble=b"preamble text\r\n",
                                   epilogue=b"epilogue text")
    fresh.check_stored(r, data, name="report.pdf",
                       content_type="application/pdf", body_len=len(body))


def test_multipart_part_without_content_type(fresh):
    data = b"no type given"
    r, _ = fresh.post_multipart([H.file_part(data, "n.dat", None)])
    fresh.check_stored(r, data, content_type="application/octet-stream")


def test_multipart_delimiter_lookalikes_kept_intact(fresh):
    boundary = "Bnd" + secrets.token_hex(8)
    b = boundary.encode()
    data = (b"--" + b + b"\r\nnot at a line start ... \r\n--" + b[:-1]
            + b"X\r\n\r\n--" + b[:5] + b"\r\n-" + b"\r\n--" + b[:-2])
    data = b"lead" + data  # never at the start of a line after CRLF
    r, _ = fresh.post_multipart([H.file_part(data, "tricky.bin")],
                                boundary=boundary)
    fresh.check_stored(r, data)


def test_multipart_quoted_boundary_and_case(fresh):
    data = b"case-insensitive media type and parameter names"
    body, _ = H.multipart([H.file_part(data, "c.txt", "text/plain")],
                          boundary="quoted:boundary")
    r = fresh.post(body, {"Content-Type":
                          'Multipart/Form-Data; BOUNDARY="quoted:boundary"'})
    fresh.check_stored(r, data, name="c.txt", content_type="text/plain")


def test_raw_without_filename(fresh):
    data = secrets.token_bytes(1000)
    r = fresh.post(data, {"Content-Type": "application/octet-stream"})
    fresh.check_stored(r, data, content_type="application/octet-stream")


def test_raw_without_content_type(fresh):
    data = secrets.token_bytes(100)
    req = requests.Request("POST", fresh.url(), data=data).prepare()
    req.headers.pop("Content-Type", None)
    with requests.Session() as s:
        r = s.send(req, timeout=60)
    fresh.check_stored(r, data, content_type="application/octet-stream")


def test_raw_content_type_is_recorded(fresh):
    data = b"%PDF-1.4 fake"
    r = fresh.post(data, {"Content-Type": "application/pdf"})
    fresh.check_stored(r, data, content_type="application/pdf")


@pytest.mark.parametrize("given,expected", [
    ("../../etc/passwd", "passwd"),
    # escaped as quoted-pairs, so it reads the same either way
    ("C:\\\\Users\\\\me\\\\evil.exe", "evil.exe"),
    ("dir/sub/ok.txt", "ok.txt"),
    ("a\tb.txt", "ab.txt"),  # HTAB: the one control legal in a header
])
def test_multipart_name_reduced(fresh, given, expected):
    data = b"name test"
    r, _ = fresh.post_multipart([H.file_part(data, given)])
    fresh.check_stored(r, data, name=expected)


@pytest.mark.parametrize("header,expected", [
    ('attachment; filename="../../etc/passwd"', "passwd"),
    ('attachment; filename="we\\"ird.txt"', 'we"ird.txt'),
    ("attachment; filename*=UTF-8''na%C3%AFve%20file.txt", "na\u00efve file.txt"),
    ("attachment; filename*=UTF-8''a%01b%1Fc%7Fd%0D%0A.txt", "abcd.txt"),
    ("attachment; filename*=UTF-8''..%2F..%2Fetc%2Fshadow", "shadow"),
    ('attachment; filename="x.bin"; filename*=UTF-8\'\'%E2%82%AC.txt',
     "\u20ac.txt"),
])
def test_raw_name_from_content_disposition(fresh, header, expected):
    data = b"raw name test"
    r = fresh.post(data, {"Content-Type": "application/octet-stream",
                          "Content-Disposition": header})
    fresh.check_stored(r, data, name=expected)


def test_name_cut_to_255_bytes_on_char_boundary(fresh):
    data = b"long name"
    given = "\u00e9" * 200 + ".txt"  # 404 bytes of UTF-8
    r, _ = fresh.post_multipart([H.file_part(data, given)])
    doc = fresh.check_stored(r, data)
    name = doc["name"].encode("utf-8")  # also proves it is valid UTF-8
    assert 0 < len(name) <= 255, len(name)
    assert given.encode("utf-8").startswith(name) or name.endswith(b".txt")


# A client's file name as it stands between the quotes (of the raw upload's
# Content-Disposition header or of the file part's): backslashes are sent as
# they are (only \" and \\ are escapes), '"', CR and LF as HTML's %22, %0D,
# %0A; the name is what is left after the last '/' or '\'.
CLIENT_NAMES = [pytest.param(g, e, id=i) for i, g, e in [
    ("dotdot-path", "..\\..\\windows\\evil.txt", "evil.txt"),
    ("windows", "C:\\Users\\ana\\report.pdf", "report.pdf"),
    ("unc", "\\\\server\\share\\a.txt", "a.txt"),   # \\ is one backslash
    ("mixed", "a/b\\c/d\\e.txt", "e.txt"),
    ("escaped-quote", "C:\\dir\\we\\\"ird.txt", 'we"ird.txt'),
    ("escaped-backslash", "a\\\\b.txt", "b.txt"),
    ("form-quote", "r\u00e9sum\u00e9 %22q%22.txt", 'r\u00e9sum\u00e9 "q".txt'),
    ("form-crlf", "a%0d%0Ab.txt", "ab.txt"),
    ("other-pct", "%41%2F%5C.txt", "%41%2F%5C.txt"),          # no other %XX
    ("cut-254", "C:\\dir\\" + "\u00e9" * 200, "\u00e9" * 127),  # not 255
    ("trailing-sep", "C:\\dir\\\\", ""),
    ("dotdot", "C:\\dir\\..", ""),
]]


def _raw_with_name(fresh, data, given):
    value = b'attachment; filename="' + given.encode("utf-8") + b'"'
    return fresh.post(data, {"Content-Type": "application/octet-stream",
                             "Content-Disposition": value})


@pytest.mark.parametrize("given,expected", CLIENT_NAMES)
def test_raw_client_file_name(fresh, given, expected):
    data = b"raw client name"
    doc = fresh.check_stored(_raw_with_name(fresh, data, given), data,
                             name=expected)
    assert fresh.rv.meta(doc["id"]).get("name") == expected


@pytest.mark.parametrize("given,expected", CLIENT_NAMES)
def test_multipart_client_file_name(fresh, given, expected):
    data = b"part client name"
    r, _ = fresh.post_multipart([H.file_part(data, given)])
    doc = fresh.check_stored(r, data, name=expected)
    assert fresh.rv.meta(doc["id"]).get("name") == expected


def test_name_reduced_to_nothing_is_no_name(fresh):
    """A name that reduces to nothing is stored as a missing one is."""
    data = b"no name"
    plain = fresh.check_stored(fresh.post_raw(data), data)
    empty = fresh.check_stored(_raw_with_name(fresh, data, "C:\\dir\\\\"),
                               data)
    assert plain["name"] == empty["name"] == ""
    assert fresh.rv.meta(empty["id"]).get("name") == ""


def test_raw_file_name_open_after_escaped_quote(fresh):
    # \" escapes the quote even after a path: the value never ends
    _, doc = fresh.expect_error(lambda: _raw_with_name(
        fresh, b"x", "C:\\dir\\"), 400, "bad_request")
    assert doc["message"] == "Malformed Content-Disposition header.", doc


def test_multipart_file_name_open_after_escaped_quote(fresh):
    fresh.expect_error(lambda: fresh.post_multipart(
        [H.file_part(b"x", "C:\\dir\\")])[0], 400, "bad_request")


def test_fresh_key_and_iv_per_file(fresh):
    data = b"same plaintext twice" * 10
    blobs = []
    for _ in range(2):
        r = fresh.post(data, {"Content-Type": "application/octet-stream"})
        doc = fresh.check_stored(r, data)
        with open("%s/%s/%s.enc" % (fresh.site.storage, doc["id"][:2],
                                    doc["id"]), "rb") as f:
            blobs.append(f.read())
    a, b = blobs
    assert a[8:16] == b[8:16]           # same KEK
    assert a[16:88] != b[16:88]         # fresh data key
    assert a[88:104] != b[88:104]       # fresh IV
    assert a[104:-32] != b[104:-32]


def test_nosync_location(fresh):
    data = secrets.token_bytes(3000)
    r = fresh.post(data, {"Content-Type": "application/octet-stream"},
                   path="/nosync/")
    fresh.check_stored(r, data)


def test_authenticated_user_recorded(fresh):
    data = b"from alice"
    r = fresh.post(data, {"Content-Type": "text/plain"}, path="/auth/",
                   auth=("alice", "wonderland"))
    fresh.check_stored(r, data, user="alice")


def test_unauthenticated_rejected_by_apache(fresh):
    before, keys = fresh.files(), fresh.rv.file_keys()
    r = fresh.post(b"no credentials", {"Content-Type": "text/plain"},
                   path="/auth/")
    assert r.status_code == 401
    fresh.assert_nothing_kept(before, keys)


def test_max_size_boundary_raw(fresh):
    data = secrets.token_bytes(1024)
    r = fresh.post(data, {"Content-Type": "application/octet-stream"},
                   path="/small/")
    fresh.check_stored(r, data)


def test_max_size_is_plaintext_not_body(fresh):
    # the multipart body is larger than 1K, the file is exactly 1K
    data = secrets.token_bytes(1024)
    r, body = fresh.post_multipart([H.field_part("x", "y" * 200),
                                    H.file_part(data, "k.bin")],
                                   path="/small/")
    assert len(body) > 1024
    fresh.check_stored(r, data)


# ------------------------------------------------------------------- digests

def test_content_digest_raw_ok(fresh):
    data = secrets.token_bytes(4000)
    r = fresh.post(data, {"Content-Type": "application/octet-stream",
                          "Content-Digest": H.content_digest(data)})
    fresh.check_stored(r, data)


def test_repr_digest_raw_ok(fresh):
    data = secrets.token_bytes(4000)
    r = fresh.post(data, {"Content-Type": "application/octet-stream",
                          "Repr-Digest": H.content_digest(data)})
    fresh.check_stored(r, data)


def test_content_digest_raw_unknown_alg_ignored(fresh):
    data = secrets.token_bytes(50)
    r = fresh.post(data, {"Content-Type": "application/octet-stream",
                          "Content-Digest": "unixsum=:AAAA:"})
    fresh.check_stored(r, data)


def test_content_digest_raw_mismatch(fresh):
    data = secrets.token_bytes(4000)
    fresh.expect_error(lambda: fresh.post(
        data, {"Content-Type": "application/octet-stream",
               "Content-Digest": H.content_digest(data + b"x")}),
        400, "bad_request")


def test_repr_digest_raw_mismatch(fresh):
    data = secrets.token_bytes(4000)
    fresh.expect_error(lambda: fresh.post(
        data, {"Content-Type": "application/octet-stream",
               "Repr-Digest": H.content_digest(b"other")}),
        400, "bad_request")


@pytest.mark.parametrize("value", [
    "sha-256=notbase64",
    "sha-256=:!!!not base64!!!:",
    "sha-256=:AAAA:",            # valid base64, wrong length for sha-256
    "sha-256",                   # boolean item, no digest
])
def test_content_digest_raw_malformed(fresh, value):
    data = secrets.token_bytes(100)
    fresh.expect_error(lambda: fresh.post(
        data, {"Content-Type": "application/octet-stream",
               "Content-Digest": value}), 400, "bad_request")


B64_ALPHABET = ("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                "0123456789+/")


def _b64_unused_bits_set(digest):
    """base64 of digest with the bits before '=' that encode nothing set to
    1: it decodes to the very same bytes, but is not the canonical form."""
    text = base64.b64encode(digest).decode()
    pad = text.count("=")
    assert pad in (1, 2)
    last = len(text) - pad - 1
    mask = 0x3 if pad == 1 else 0xf
    odd = text[:last] + B64_ALPHABET[B64_ALPHABET.index(text[last]) | mask] \
        + "=" * pad
    assert odd != text and base64.b64decode(odd) == digest
    return odd


def _sha(alg, data):
    return hashlib.new(alg.replace("-", ""), data).digest()


@pytest.mark.parametrize("header,alg", [("Content-Digest", "sha-256"),
                                        ("Content-Digest", "sha-512"),
                                        ("Repr-Digest", "sha-256")])
def test_digest_non_canonical_base64_raw(fresh, header, alg):
    """The right digest, with non-zero pad bits: malformed (api.md: base64
    must be canonical), so 400 before the body counts, and nothing kept."""
    data = secrets.token_bytes(3000)
    value = "%s=:%s:" % (alg, _b64_unused_bits_set(_sha(alg, data)))
    _, doc = fresh.expect_error(lambda: fresh.post(
        data, {"Content-Type": "application/octet-stream", header: value}),
        400, "bad_request")
    assert header in doc["message"], doc
    # the canonical form of the same digest is accepted
    canonical = "%s=:%s:" % (alg, base64.b64encode(_sha(alg, data)).decode())
    r = fresh.post(data, {"Content-Type": "application/octet-stream",
                          header: canonical})
    fresh.check_stored(r, data)


@pytest.mark.parametrize("header", ["Content-Digest", "Content-MD5"])
def test_digest_non_canonical_base64_part(fresh, header):
    data = secrets.token_bytes(3000)
    if header == "Content-MD5":
        value = _b64_unused_bits_set(hashlib.md5(data).digest())
    else:
        value = "sha-256=:%s:" % _b64_unused_bits_set(_sha("sha-256", data))
    _, doc = fresh.expect_error(lambda: fresh.post_multipart([H.file_part(
        data, "p.bin", headers=["%s: %s" % (header, value)])])[0],
        400, "bad_request")
    assert header in doc["message"], doc


def test_content_digest_multipart_whole_body_ok(fresh):
    data = secrets.token_bytes(3000)
    body, ctype = H.multipart([H.field_part("a", "b"),
                               H.file_part(data, "d.bin")])
    r = fresh.post(body, {"Content-Type": ctype,
                          "Content-Digest": H.content_digest(body)})
    fresh.check_stored(r, data)


def test_content_digest_multipart_of_file_only_is_mismatch(fresh):
    data = secrets.token_bytes(3000)
    body, ctype = H.multipart([H.file_part(data, "d.bin")])
    fresh.expect_error(lambda: fresh.post(
        body, {"Content-Type": ctype,
               "Content-Digest": H.content_digest(data)}),
        400, "bad_request")


def test_content_digest_multipart_malformed(fresh):
    body, ctype = H.multipart([H.file_part(b"abc", "d.bin")])
    fresh.expect_error(lambda: fresh.post(
        body, {"Content-Type": ctype, "Content-Digest": "sha-256=:@@:"}),
        400, "bad_request")


def test_content_digest_multipart_unknown_alg_ignored(fresh):
    data = b"abc"
    body, ctype = H.multipart([H.file_part(data, "d.bin")])
    r = fresh.post(body, {"Content-Type": ctype,
                          "Content-Digest": "unixsum=:AAAA:"})
    fresh.check_stored(r, data)


def _md5_b64(data):
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def test_part_content_md5_ok(fresh):
    data = secrets.token_bytes(2000)
    r, _ = fresh.post_multipart([H.file_part(
        data, "p.bin", headers=["Content-MD5: " + _md5_b64(data)])])
    fresh.check_stored(r, data)


def test_part_content_digest_ok(fresh):
    data = secrets.token_bytes(2000)
    r, _ = fresh.post_multipart([H.file_part(
        data, "p.bin", headers=["Content-Digest: " + H.content_digest(data)])])
    fresh.check_stored(r, data)


def test_part_content_md5_mismatch(fresh):
    data = secrets.token_bytes(2000)
    fresh.expect_error(lambda: fresh.post_multipart([H.file_part(
        data, "p.bin", headers=["Content-MD5: " + _md5_b64(data[:-1])])])[0],
        400, "bad_request")


def test_part_content_digest_mismatch(fresh):
    data = secrets.token_bytes(2000)
    fresh.expect_error(lambda: fresh.post_multipart([H.file_part(
        data, "p.bin",
        headers=["Content-Digest: " + H.content_digest(b"x" + data)])])[0],
        400, "bad_request")


# -------------------------------------------------------------------- errors

@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_method_not_allowed(fresh, method):
    resp, _ = fresh.expect_error(
        lambda: requests.request(method, fresh.url(), data=b"x" if
                                 method == "PUT" else None, timeout=30),
        405, "method_not_allowed")
    allow = [m.strip().upper() for m in resp.headers.get("Allow", "").split(",")]
    assert "POST" in allow, resp.headers


def test_multipart_lf_line_ends(fresh):
    body, ctype = H.multipart([H.file_part(b"data", "a.bin")])
    body = body.replace(b"\r\n", b"\n")
    fresh.expect_error(lambda: fresh.post(body, {"Content-Type": ctype}),
                       400, "bad_request")


def test_multipart_missing_close_delimiter(fresh):
    body, ctype = H.multipart([H.file_part(b"data" * 100, "a.bin")])
    cut = body[:body.rindex(b"\r\n--")]
    fresh.expect_error(lambda: fresh.post(cut, {"Content-Type": ctype}),
                       400, "bad_request")


def test_multipart_missing_boundary_param(fresh):
    body, _ = H.multipart([H.file_part(b"data", "a.bin")])
    fresh.expect_error(lambda: fresh.post(
        body, {"Content-Type": "multipart/form-data"}), 400, "bad_request")


def test_multipart_boundary_too_long(fresh):
    boundary = "b" * 71
    body, ctype = H.multipart([H.file_part(b"data", "a.bin")],
                              boundary=boundary)
    fresh.expect_error(lambda: fresh.post(body, {"Content-Type": ctype}),
                       400, "bad_request")


def test_multipart_no_file_part(fresh):
    fresh.expect_error(lambda: fresh.post_multipart(
        [H.field_part("title", "t"), H.field_part("other", "o")])[0],
        400, "bad_request")


def test_multipart_empty_body(fresh):
    fresh.expect_error(lambda: fresh.post(
        b"", {"Content-Type": "multipart/form-data; boundary=abc"}),
        400, "bad_request")


@pytest.mark.parametrize("framing", ["length", "chunked", "none"])
def test_raw_post_with_no_body_and_no_content_type(fresh, framing):
    """Nothing at all (Content-Length: 0, an empty chunked body, or no
    length): a mistake, not a file."""
    def send():
        if framing == "chunked":
            return fresh.post(iter([]))
        if framing == "length":
            return fresh.post(b"")
        c = H.RawConn(fresh.apache.port)
        try:
            c.send(b"POST /api/upload/ HTTP/1.1\r\nHost: x\r\n"
                   b"Connection: close\r\n\r\n")
            return c.read_response()
        finally:
            c.close()
    _, doc = fresh.expect_error(send, 400, "bad_request")
    assert "no body and no Content-Type" in doc["message"], doc


@pytest.mark.parametrize("headers", [
    {"Content-Type": "application/octet-stream"},
    {"Content-Disposition": 'attachment; filename="empty.txt"'},
])
def test_raw_empty_body_named_or_typed_is_an_empty_file(fresh, headers):
    fresh.check_stored(fresh.post(b"", headers), b"", body_len=0)


def test_multipart_empty_file_is_an_empty_file(fresh):
    r, body = fresh.post_multipart([H.file_part(b"", "empty.txt")])
    fresh.check_stored(r, b"", name="empty.txt", body_len=len(body))


def test_multipart_two_file_parts(fresh):
    fresh.expect_error(lambda: fresh.post_multipart(
        [H.file_part(b"one" * 1000, "1.bin"),
         H.file_part(b"two" * 1000, "2.bin")])[0], 400, "bad_request")


def test_too_large_raw(fresh):
    data = secrets.token_bytes(2048)
    fresh.expect_error(lambda: fresh.post(
        data, {"Content-Type": "application/octet-stream"}, path="/small/"),
        413, "too_large")


def test_too_large_raw_one_over(fresh):
    data = secrets.token_bytes(1025)
    fresh.expect_error(lambda: fresh.post(
        data, {"Content-Type": "application/octet-stream"}, path="/small/"),
        413, "too_large")


def test_too_large_multipart(fresh):
    data = secrets.token_bytes(2048)
    fresh.expect_error(lambda: fresh.post_multipart(
        [H.file_part(data, "big.bin")], path="/small/")[0], 413, "too_large")


def test_too_large_answered_before_body(fresh):
    """Content-Length over the limit: 413 instead of 100 Continue."""
    def send():
        c = H.RawConn(fresh.apache.port)
        try:
            c.send(H.request_head("POST", "/small/", [
                ("Content-Type", "application/octet-stream"),
                ("Content-Length", "2048"), ("Expect", "100-continue"),
                ("Connection", "close")]))
            status, reason, headers = c.read_head()
            assert status != 100, "100 Continue before rejecting a body " \
                "whose declared length is over SecUploadMaxSize"
            return c.read_body(status, reason, headers)
        finally:
            c.close()
    fresh.expect_error(send, 413, "too_large")


@pytest.mark.parametrize("path,ctype", [
    ("/typed/", "application/pdf"),
    ("/typed/", "imagex/png"),
    ("/typed/", "text/html"),
])
def test_unsupported_type_raw(fresh, path, ctype):
    fresh.expect_error(lambda: fresh.post(
        b"%PDF-1.4", {"Content-Type": ctype}, path=path),
        415, "unsupported_type")


def test_unsupported_type_raw_without_content_type(fresh):
    def send():
        req = requests.Request("POST", fresh.url("/typed/"),
                               data=b"untyped").prepare()
        req.headers.pop("Content-Type", None)
        with requests.Session() as s:
            return s.send(req, timeout=60)
    fresh.expect_error(send, 415, "unsupported_type")


def test_unsupported_type_multipart(fresh):
    fresh.expect_error(lambda: fresh.post_multipart(
        [H.file_part(b"%PDF-1.4" * 100, "a.pdf", "application/pdf")],
        path="/typed/")[0], 415, "unsupported_type")


def test_unsupported_type_multipart_default_type(fresh):
    fresh.expect_error(lambda: fresh.post_multipart(
        [H.file_part(b"bytes", "a.bin", None)], path="/typed/")[0],
        415, "unsupported_type")


@pytest.mark.parametrize("ctype", ["image/png", "IMAGE/JPEG", "text/plain",
                                   "text/plain; charset=utf-8"])
def test_allowed_type_raw(fresh, ctype):
    data = b"\x89PNG\r\n\x1a\n" + secrets.token_bytes(100)
    r = fresh.post(data, {"Content-Type": ctype}, path="/typed/")
    fresh.check_stored(r, data)


def test_allowed_type_multipart(fresh):
    data = b"\x89PNG\r\n\x1a\n" + secrets.token_bytes(100)
    r, _ = fresh.post_multipart([H.file_part(data, "p.png", "image/png")],
                                path="/typed/")
    fresh.check_stored(r, data, content_type="image/png")


def test_field_name_configured(fresh):
    data = b"doc field"
    r, _ = fresh.post_multipart([H.file_part(data, "d.txt", name="doc")],
                                path="/field/")
    fresh.check_stored(r, data, name="d.txt")


def test_field_name_default_not_accepted_elsewhere(fresh):
    fresh.expect_error(lambda: fresh.post_multipart(
        [H.file_part(b"file field", "d.txt", name="file")],
        path="/field/")[0], 400, "bad_request")


def test_error_body_is_json_without_internals(fresh):
    r = fresh.post(b"x", {"Content-Type": "multipart/form-data"})
    assert r.status_code == 400
    doc = json.loads(r.text)
    assert set(doc) >= {"status", "code", "message"}
    assert fresh.site.storage not in r.text
