"""Reading back (docs/api.md): GET/HEAD stream the verified plaintext, /meta shows
the metadata without the path, DELETE removes file and metadata; unknown,
malformed, foreign (SecUploadOwnerOnly) and tampered files never leak a byte.
Key rotation is exercised end to end with servers of their own.

The session's server writes the module's default format (2); what holds
for every file is run on files of both formats (a server of its own writes
version 1, which stays readable forever), and what is particular to version
1 (its layout, its whole-file answers) on version 1 files. Ranges and
version 2 files damaged mid-file: test_range.py."""

import hashlib
import json
import os
import re
import secrets
import shutil
import stat
import subprocess
import threading
from urllib.parse import unquote_to_bytes

import pytest
import requests

import secupload_harness as H
from secupload_stack import Stack, report_shutdown, running, upload_locations

SIZES = [0, 1, 15, 16, 17, 65535, 65536, 65537]
MIB = 1024 * 1024
ALICE = ("alice", "wonderland")
BOB = ("bob", "builder")
META_FIELDS = {"id", "name", "size", "sha256", "content_type", "key_id",
               "created", "client_ip", "user", "request_id"}
INTERNAL_ERROR = {"status": "error", "code": "internal_error",
                  "message": "Internal error."}
# RFC 5987 attr-char, or a %XX escape
EXT_VALUE_RE = re.compile(r"^(?:[A-Za-z0-9!#$&+.^_`|~-]|%[0-9A-Fa-f]{2})*$")
TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
PARAM_RE = re.compile(r"\s*;\s*(%s)\s*=\s*(\"(?:[^\"\\]|\\.)*\"|%s)"
                      % (TOKEN, TOKEN))


def _without_request_id(body):
    """An error answer's JSON, less the id of the request it answers."""
    doc = json.loads(body)
    doc.pop("request_id", None)
    return doc


# ------------------------------------------------------------------ helpers

FORMATS = pytest.mark.parametrize("fmt", [2, 1], ids=["v2", "v1"])


@pytest.fixture(scope="module")
def stack_v1(module_so, request):
    """A server that writes format version 1 (SecUploadFormatVersion 1)."""
    s = Stack("files-v1", format_version=1)
    yield from running(request, s)


@pytest.fixture
def fmt_stack(request, fmt):
    """A server whose uploads are stored in format fmt: the session's for
    2 (the module's default), its own for 1."""
    if fmt == 1:
        s = request.getfixturevalue("stack_v1")
    else:
        s = request.getfixturevalue("fresh")
        if s.format_version == 1:
            pytest.skip("SECUPLOAD_UPLOAD_FORMAT=1: no version 2 server")
    assert s.apache.running and s.redis.running
    return s


def stored_blob(s, fid):
    with open(enc_path(s.site.storage, fid), "rb") as f:
        return f.read()


def bound_value(blob):
    """What binds a stored file to its id (the metadata's iv, the ETag): a
    v1 file's IV, a v2 file's nonce."""
    if blob[:8] == H.MAGIC2:
        return blob[92:108]
    return blob[88:104]

def upload(s, data, name=None, ctype="application/octet-stream",
           path="/api/upload/", auth=None):
    """A raw upload that must succeed; returns the 201's JSON."""
    headers = {"Content-Type": ctype}
    if name is not None:
        headers["Content-Disposition"] = "attachment; filename*=UTF-8''" + \
            "".join(c if EXT_VALUE_RE.match(c) and c != "%" else
                    "".join("%%%02X" % b for b in c.encode("utf-8"))
                    for c in name)
    r = requests.post(s.url(path), data=data, headers=headers, auth=auth,
                      timeout=120)
    assert r.status_code == 201, "upload: %d %s" % (r.status_code, r.text)
    return r.json()


def files_url(s, fid, suffix="", base="/api/files/"):
    return s.url(base + fid + suffix)


def enc_path(storage, fid):
    return os.path.join(storage, fid[:2], fid + ".enc")


def assert_json_error(resp, status, code):
    """The module's JSON error: exactly status/code/message, nothing more."""
    st = getattr(resp, "status_code", None) or resp.status
    body = getattr(resp, "content", None)
    if body is None:
        body = resp.body
    assert st == status, "expected %d, got %d: %r" % (status, st, body[:300])
    ctype = resp.headers.get("content-type", "")
    assert ctype.split(";")[0].strip().lower() == "application/json", \
        "error body is %r: %r" % (ctype, body[:300])
    cl = resp.headers.get("content-length")
    assert cl is not None and int(cl) == len(body), (cl, len(body))
    doc = json.loads(body.decode("utf-8"))
    assert set(doc) == {"status", "code", "message", "request_id"}, doc
    assert resp.headers.get("x-request-id") == doc["request_id"], resp.headers
    assert doc["status"] == "error" and doc["code"] == code, doc
    assert isinstance(doc["message"], str) and doc["message"], doc
    return doc


def parse_disposition(value):
    """RFC 6266: (lower-case type, {lower-case param: raw value}); the whole
    header must parse."""
    m = re.match(r"^\s*(%s)" % TOKEN, value)
    assert m, "no disposition type in %r" % value
    dtype, pos, params = m.group(1).lower(), m.end(), {}
    while pos < len(value):
        pm = PARAM_RE.match(value, pos)
        assert pm, "unparsable Content-Disposition at %d: %r" % (pos, value)
        name = pm.group(1).lower()
        assert name not in params, "parameter %s twice: %r" % (name, value)
        params[name] = pm.group(2)
        pos = pm.end()
    return dtype, params


def unquote_string(v):
    if v.startswith('"'):
        return re.sub(r"\\(.)", r"\1", v[1:-1])
    return v


def decode_ext_value(v):
    """RFC 5987 ext-value -> str (charset must be UTF-8)."""
    m = re.match(r"^([A-Za-z0-9!#$%&+^_`{}~-]+)'([A-Za-z0-9-]*)'(.*)$", v)
    assert m, "bad ext-value %r" % v
    assert m.group(1).upper() == "UTF-8", v
    assert EXT_VALUE_RE.match(m.group(3)), "bad characters in %r" % v
    return unquote_to_bytes(m.group(3)).decode("utf-8")


def check_disposition(value, name):
    dtype, params = parse_disposition(value)
    assert dtype == "attachment", value
    if not name:
        return
    assert "filename" in params, value
    fallback = unquote_string(params["filename"])
    assert all(0x20 <= ord(c) < 0x7f for c in fallback), value
    if all(0x20 <= ord(c) < 0x7f and c not in '"\\' for c in name):
        assert fallback == name, value
    assert "filename*" in params, value
    assert decode_ext_value(params["filename*"]) == name, value


def check_download_headers(resp, doc, s):
    """The headers of a whole file's 200 (GET or HEAD) from server s: ranges
    are offered for a v2 file only, the ETag is the file's bound value."""
    h = resp.headers
    blob = stored_blob(s, doc["id"])
    v2 = blob[:8] == H.MAGIC2
    assert h.get("Accept-Ranges") == ("bytes" if v2 else "none"), h
    assert h.get("ETag") == '"%s"' % bound_value(blob).hex(), h
    assert h.get("Content-Type") == doc["content_type"], h
    assert h.get("Content-Length") == str(doc["size"]), h
    assert "Content-Encoding" not in h, h
    assert "Transfer-Encoding" not in h, h
    assert "Content-Range" not in h, h
    check_disposition(h.get("Content-Disposition", ""), doc["name"])
    check_file_guards(h)


def check_file_guards(h):
    """What keeps a stored file from acting as a page of the site."""
    assert h.get("X-Content-Type-Options") == "nosniff", h
    assert h.get("Content-Security-Policy") == "sandbox", h
    assert h.get("Cross-Origin-Resource-Policy") == "same-origin", h


def audit_entries(rv, mark, event, fid, settle=2.0):
    return H._wait_for(lambda: [e for e in rv.audit_since(mark)
                                if e.get("event") == event
                                and e.get("id") == fid], settle)


def check_audit(e, status, user="", reason=None):
    assert e.get("status") == str(status), e
    assert e.get("client_ip") == "127.0.0.1", e
    assert e.get("user") == user, e
    assert e.get("request_id"), e
    assert e.get("time"), e
    assert re.match(r"^\d+$", e.get("bytes", "")), e
    if reason is not None:
        assert e.get("reason") == reason, e


def raw_get(port, path, method="GET", headers=()):
    c = H.RawConn(port)
    try:
        c.send(H.request_head(method, path, [("Connection", "close")]
                              + list(headers)))
        return c.read_response(head_request=(method == "HEAD"))
    finally:
        c.close()


# ------------------------------------------------------------ round trips

@FORMATS
@pytest.mark.parametrize("size", SIZES)
def test_download_is_the_upload(fmt_stack, fmt, size):
    s = fmt_stack
    data = secrets.token_bytes(size)
    ctype = "application/x-sz%d" % size
    doc = upload(s, data, name="dl-%d.bin" % size, ctype=ctype)
    assert doc["content_type"] == ctype
    assert stored_blob(s, doc["id"])[:8] == (H.MAGIC2 if fmt == 2
                                              else H.MAGIC)
    r = requests.get(files_url(s, doc["id"]), timeout=60)
    assert r.status_code == 200, r.text[:300]
    assert r.content == data
    check_download_headers(r, doc, s)
    assert r.headers["Content-Disposition"].startswith("attachment")


def test_download_64mib_streamed(fresh):
    total, piece = 64 * MIB, MIB
    want = hashlib.sha256()

    def body():
        for _ in range(total // piece):
            chunk = os.urandom(piece)
            want.update(chunk)
            yield chunk

    r = requests.post(fresh.url(), data=body(), timeout=300, headers={
        "Content-Type": "application/octet-stream",
        "Content-Disposition": 'attachment; filename="big64.bin"'})
    assert r.status_code == 201, r.text[:300]
    doc = r.json()
    assert doc["size"] == total and doc["sha256"] == want.hexdigest(), doc
    try:
        got, n = hashlib.sha256(), 0
        with requests.get(files_url(fresh, doc["id"]), stream=True,
                          timeout=300) as g:
            assert g.status_code == 200, g.text[:300]
            check_download_headers(g, doc, fresh)
            for chunk in g.iter_content(chunk_size=MIB):
                got.update(chunk)
                n += len(chunk)
        assert n == total
        assert got.hexdigest() == want.hexdigest()
    finally:
        requests.delete(files_url(fresh, doc["id"]), timeout=60)


@pytest.mark.parametrize("name", [
    "r\u00e9sum\u00e9 \"final\" \u20ac 2024.pdf",
    "\u65e5\u672c\u8a9e\u306e\u30d5\u30a1\u30a4\u30eb.txt",
    "emoji \U0001f600;name=x.bin",
    "plain-ascii_name.txt",
    "per%cent 'quote' a=b,c.txt",
])
def test_content_disposition_names(fresh, name):
    data = b"named " + name.encode("utf-8")
    doc = upload(fresh, data, name=name, ctype="text/plain")
    assert doc["name"] == name, doc
    r = requests.get(files_url(fresh, doc["id"]), timeout=60)
    assert r.status_code == 200 and r.content == data
    check_disposition(r.headers["Content-Disposition"], name)


def test_unnamed_file_is_plain_attachment(fresh):
    data = b"no name given"
    r = fresh.post(data, {"Content-Type": "application/octet-stream"})
    assert r.status_code == 201
    doc = r.json()
    g = requests.get(files_url(fresh, doc["id"]), timeout=60)
    assert g.status_code == 200 and g.content == data
    check_disposition(g.headers["Content-Disposition"], doc["name"])


@pytest.mark.parametrize("rng", ["bytes=0-9", "bytes=-5", "bytes=10-",
                                 "bytes=0-0,5-6", "bytes=999999-"])
def test_range_of_v1_file_gets_whole_file(stack_v1, rng):
    """A v1 file is verified whole before its first byte: no ranges (a v2
    file's: test_range.py)."""
    s = stack_v1
    data = secrets.token_bytes(1000)
    doc = upload(s, data, name="r.bin")
    r = requests.get(files_url(s, doc["id"]), headers={"Range": rng},
                     timeout=60)
    assert r.status_code == 200, (r.status_code, r.headers)
    assert r.content == data
    check_download_headers(r, doc, s)
    assert r.headers.get("Accept-Ranges") == "none", r.headers


@FORMATS
def test_head_same_headers_no_body(fmt_stack, fmt):
    s = fmt_stack
    data = secrets.token_bytes(3000)
    doc = upload(s, data, name="head.bin", ctype="image/png")
    path = "/api/files/" + doc["id"]
    c = H.RawConn(s.apache.port)
    try:
        # HEAD then GET on one connection: a body after the HEAD would be
        # read as the GET's status line
        c.send(H.request_head("HEAD", path, []))
        head = c.read_response(head_request=True)
        c.send(H.request_head("GET", path, [("Connection", "close")]))
        get = c.read_response()
    finally:
        c.close()
    assert head.status == 200 and get.status == 200, (head, get)
    assert get.body == data
    skip = {"date", "connection", "keep-alive", "upgrade"}
    hh = {k: v for k, v in head.headers.items() if k not in skip}
    gh = {k: v for k, v in get.headers.items() if k not in skip}
    assert hh == gh, (hh, gh)
    assert hh["content-length"] == str(len(data))
    assert hh["content-type"] == "image/png"
    # and with requests, as a client would
    r = requests.head(files_url(s, doc["id"]), timeout=60)
    assert r.status_code == 200 and r.content == b""
    check_download_headers(r, doc, s)


@pytest.mark.parametrize("ctype", [
    "text/plain; charset=utf-8", "Text/HTML", 'application/json;charset="x"',
    "image/svg+xml", "application/pdf",
])
def test_content_type_as_stored(fresh, ctype):
    data = b"<html><script>alert(1)</script></html>"
    doc = upload(fresh, data, name="t.html", ctype=ctype)
    stored = fresh.rv.meta(doc["id"])["content_type"]
    r = requests.get(files_url(fresh, doc["id"]), timeout=60)
    assert r.status_code == 200 and r.content == data
    assert r.headers["Content-Type"] == stored == doc["content_type"]
    # stored markup is never rendered inline under the site's origin
    assert r.headers.get("X-Content-Type-Options") == "nosniff"
    assert parse_disposition(r.headers["Content-Disposition"])[0] == \
        "attachment"


# a stored type as nobody uploaded it: written into Redis directly
@pytest.mark.parametrize("junk", [
    "text/html\r\nX-Injected: yes", "text/html\nSet-Cookie: a=b",
    "text/html\r", "\r\n", "text/plain\t", "text/html\x7f", "",
    "text", "/html", "text/", "text/html; charset=\"open", "te xt/html",
    "text/h\u00e9ml", "text/" + "x" * 300, "text/html; a=1; a=2",
])
def test_stored_type_revalidated(fresh, junk):
    data = b"<html><script>alert(1)</script></html>"
    doc = upload(fresh, data, name="t.html", ctype="text/html")
    fid = doc["id"]
    fresh.redis.client().hset(fresh.prefix + "file:" + fid, "content_type",
                              junk)
    rv = fresh.rv
    mark = rv.audit_mark()
    for method in ("GET", "HEAD"):
        resp = raw_get(fresh.apache.port, "/api/files/" + fid, method=method)
        assert resp.status == 200, (resp.status, resp.body[:300])
        assert resp.body == (data if method == "GET" else b"")
        h = resp.headers
        assert h["content-type"] == "application/octet-stream", h
        assert h["content-length"] == str(len(data)), h
        assert "x-injected" not in h and "set-cookie" not in h, h
        check_file_guards({k.title(): v for k, v in h.items()})
        check_disposition(h["content-disposition"], "t.html")
    e = audit_entries(rv, mark, "file.read", fid)
    assert len(e) == 2, rv.audit_since(mark)
    for entry, size in zip(e, (len(data), 0)):
        check_audit(entry, 200, reason="")
        assert entry["bytes"] == str(size), entry
    fresh.assert_logged(e[0]["request_id"], "SU00220")
    # the stored value itself is left as it is
    assert fresh.rv.meta(fid)["content_type"] == junk
    requests.delete(files_url(fresh, fid), timeout=60)


def _stream_with_pause(s, fid, during):
    """GET fid, read 64 KiB (verification is over by then), call during(),
    read the rest. Returns (body, declared length, clean end)."""
    g = requests.get(files_url(s, fid), stream=True, timeout=60)
    assert g.status_code == 200, g.text[:300]
    declared = int(g.headers["Content-Length"])
    first = g.raw.read(65536)
    during()
    try:
        rest, clean = g.raw.read(), True
    except Exception:  # an aborted body: what a changed file must cause
        rest, clean = b"", False
    finally:
        g.close()
    body = first + rest
    return body, declared, clean and len(body) == declared


def test_delete_during_download(fresh):
    data = os.urandom(16 * MIB)
    doc = upload(fresh, data, name="dd.bin")
    fid = doc["id"]

    def delete():
        d = requests.delete(files_url(fresh, fid), timeout=60)
        assert d.status_code == 204

    body, declared, complete = _stream_with_pause(fresh, fid, delete)
    assert declared == len(data) and complete
    same = body == data
    assert same, "the body changed when the file was deleted meanwhile"
    assert not os.path.exists(enc_path(fresh.site.storage, fid))
    assert fresh.rv.meta(fid) == {}


def test_change_after_verification_never_delivered_whole(fresh):
    """Bytes changed on disk while the answer streams were never verified:
    they must not arrive as a complete 200 (the body has to be cut short)."""
    data = os.urandom(32 * MIB)
    doc = upload(fresh, data, name="race.bin")
    fid = doc["id"]
    path = enc_path(fresh.site.storage, fid)
    # far beyond what socket buffers can have read ahead
    off = H.HEADER_LEN + 30 * MIB + 5

    def flip():
        with open(path, "r+b") as f:
            f.seek(off)
            b = f.read(1)
            f.seek(off)
            f.write(bytes([b[0] ^ 0x01]))

    try:
        body, declared, complete = _stream_with_pause(fresh, fid, flip)
        assert declared == len(data)
        same = body == data
        if complete and not same:
            diff = [i for i in range(30 * MIB - 64, 30 * MIB + 64)
                    if body[i] != data[i]]
            pytest.fail(
                "ciphertext changed after verification was decrypted and "
                "sent as a complete 200: %d plaintext bytes differ near "
                "offset %d (first %r)" % (len(diff), 30 * MIB, diff[:3]),
                pytrace=False)
    finally:
        requests.delete(files_url(fresh, fid), timeout=60)


@FORMATS
@pytest.mark.parametrize("base", ["/api/files/", "/nommap-files/"])
def test_download_with_and_without_mmap(fmt_stack, fmt, base):
    s = fmt_stack
    data = os.urandom(9 * MIB + 5)
    doc = upload(s, data, name="map.bin")
    try:
        r = requests.get(files_url(s, doc["id"], base=base), timeout=60)
        assert r.status_code == 200, r.text[:300]
        check_download_headers(r, doc, s)
        assert r.content == data
    finally:
        requests.delete(files_url(s, doc["id"]), timeout=60)


def test_truncated_while_read_without_mmap(fresh):
    """With EnableMMAP Off the file is read, not mapped: a file truncated in
    place while it is sent cuts the answer short and the child lives on
    (a mapped read would end it with SIGBUS, as Apache's own EnableMMAP
    warns)."""
    data = os.urandom(32 * MIB)
    doc = upload(fresh, data, name="trunc.bin")
    fid = doc["id"]
    path = enc_path(fresh.site.storage, fid)

    def truncate():
        os.truncate(path, H.HEADER_LEN + 4 * MIB)

    try:
        g = requests.get(files_url(fresh, fid, base="/nommap-files/"),
                         stream=True, timeout=60)
        assert g.status_code == 200, g.text[:300]
        first = g.raw.read(65536)
        truncate()
        try:
            rest, clean = g.raw.read(), True
        except Exception:
            rest, clean = b"", False
        finally:
            g.close()
        body = first + rest
        assert not (clean and len(body) == len(data)), \
            "a file truncated while read was sent as complete"
        # the same server answers the next request
        again = upload(fresh, b"after", name="after.bin")
        r = requests.get(files_url(fresh, again["id"]), timeout=60)
        assert r.status_code == 200 and r.content == b"after"
    finally:
        requests.delete(files_url(fresh, fid), timeout=60)


# ------------------------------------------------------------------ /meta

@FORMATS
def test_meta(fmt_stack, fmt):
    fresh = fmt_stack
    data = secrets.token_bytes(777)
    doc = upload(fresh, data, name="m\u00e9ta.bin", ctype="application/x-m")
    fid = doc["id"]
    r = requests.get(files_url(fresh, fid, "/meta"), timeout=60)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].split(";")[0] == "application/json"
    m = r.json()
    assert META_FIELDS <= set(m), "missing: %r" % (META_FIELDS - set(m))
    assert "path" not in m and "iv" not in m, m
    assert not [k for k in m if re.search(r"wrap|kek|secret|data_key|mac",
                                          k)], m
    assert not any(fid[:2] + "/" in str(v) or ".enc" in str(v)
                   for v in m.values()), m
    assert isinstance(m["size"], int) and not isinstance(m["size"], bool)
    assert m["size"] == len(data)
    assert m["id"] == fid and m["name"] == doc["name"]
    assert m["sha256"] == hashlib.sha256(data).hexdigest()
    assert m["content_type"] == "application/x-m"
    assert m["key_id"] == H.key_id(fresh.kek1).hex()
    assert H.RFC3339_UTC_RE.match(m["created"]), m
    assert m["client_ip"] == "127.0.0.1" and m["user"] == ""
    stored = fresh.rv.meta(fid)
    for k, v in m.items():
        assert str(v) == stored.get(k), (k, v, stored.get(k))
    # what binds the file to the id: its IV (v1) or nonce (v2), recorded
    # but not shown
    blob = stored_blob(fresh, fid)
    assert blob[:8] == (H.MAGIC2 if fmt == 2 else H.MAGIC)
    assert stored["iv"] == bound_value(blob).hex(), stored
    # HEAD of /meta: headers only
    h = requests.head(files_url(fresh, fid, "/meta"), timeout=60)
    assert h.status_code == 200 and h.content == b""
    assert h.headers.get("Content-Length") == r.headers.get("Content-Length")


# ------------------------------------------------------------------ DELETE

def test_delete(fresh):
    data = secrets.token_bytes(4321)
    doc = upload(fresh, data, name="del.bin")
    fid = doc["id"]
    path = enc_path(fresh.site.storage, fid)
    assert os.path.exists(path)
    rv = fresh.rv
    mark = rv.audit_mark()
    r = requests.delete(files_url(fresh, fid), timeout=60)
    assert r.status_code == 204, r.text
    assert r.content == b""
    assert not os.path.exists(path)
    assert rv.meta(fid) == {}
    e = audit_entries(rv, mark, "file.deleted", fid)
    assert len(e) == 1, rv.audit_since(mark)
    check_audit(e[0], 204)
    assert e[0]["bytes"] in ("0", str(len(data))), e[0]
    assert_json_error(requests.get(files_url(fresh, fid), timeout=60),
                      404, "not_found")
    assert_json_error(requests.get(files_url(fresh, fid, "/meta"),
                                   timeout=60), 404, "not_found")
    assert_json_error(requests.delete(files_url(fresh, fid), timeout=60),
                      404, "not_found")
    assert not H.stray_files(fresh.site.storage)


# ------------------------------------------------- unknown, malformed, 405

def test_unknown_id(fresh):
    fid = secrets.token_hex(16)
    for suffix in ("", "/meta"):
        assert_json_error(requests.get(files_url(fresh, fid, suffix),
                                       timeout=60), 404, "not_found")
    assert_json_error(requests.delete(files_url(fresh, fid), timeout=60),
                      404, "not_found")
    h = requests.head(files_url(fresh, fid), timeout=60)
    assert h.status_code == 404 and h.content == b""
    assert h.headers["Content-Type"].split(";")[0] == "application/json"


@pytest.fixture
def known(fresh):
    """A stored file whose id the malformed variants are made from."""
    data = b"KNOWN-FILE-CONTENT " * 50
    doc = upload(fresh, data, name="known.txt", ctype="text/plain")
    return doc["id"], data


@pytest.mark.parametrize("variant", [
    "empty", "short", "31hex", "33hex", "upper", "nonhex", "trailing-slash",
    "meta-slash", "backslash-traversal", "dots32", "nul", "space",
    "meta-extra",
])
def test_malformed_id(fresh, known, variant):
    fid, data = known
    p = {
        "empty": "",
        "short": fid[:8],
        "31hex": fid[:31],
        "33hex": fid + "0",
        "upper": fid.upper(),
        "nonhex": "g" + fid[1:],
        "trailing-slash": fid + "/",
        "meta-slash": fid + "/meta/",
        "backslash-traversal": "..%5c..%5c" + fid[:22],
        "dots32": "." * 32,
        "nul": fid[:16] + "%00" + fid[17:],
        "space": fid[:16] + "%20" + fid[17:],
        "meta-extra": fid + "/meta/x",
    }[variant]
    for method in ("GET", "DELETE"):
        r = raw_get(fresh.apache.port, "/api/files/" + p, method)
        if variant == "nul" and r.status in (400, 404) and \
                r.headers.get("content-type", "").startswith("text/html"):
            continue  # Apache itself refuses %00 before any handler runs
        assert_json_error(r, 404, "not_found")
        assert data not in r.body
    # nothing was deleted on the way
    assert os.path.exists(enc_path(fresh.site.storage, fid))
    assert fresh.rv.meta(fid)


@pytest.mark.parametrize("path", [
    "/api/files/..%2f..%2fetc%2fpasswd",
    "/api/files/%2e%2e/%2e%2e/etc/passwd",
    "/api/files/../../etc/passwd",
    "/api/files/..%2f..%2fhello.txt",
])
def test_traversal_never_reads_outside(fresh, path):
    r = raw_get(fresh.apache.port, path)
    assert r.status in (400, 404), r
    assert b"root:" not in r.body and b"hello from the harness" not in \
        r.body, r
    if r.headers.get("content-type", "").startswith("application/json"):
        assert_json_error(r, 404, "not_found")


@pytest.mark.parametrize("method", ["PUT", "POST", "PATCH", "OPTIONS"])
def test_other_methods_405(fresh, known, method):
    fid, data = known
    r = requests.request(method, files_url(fresh, fid), data=b"REPLACED",
                         timeout=60)
    assert_json_error(r, 405, "method_not_allowed")
    allow = {m.strip() for m in r.headers.get("Allow", "").split(",")}
    assert allow == {"GET", "HEAD", "DELETE"}, r.headers
    g = requests.get(files_url(fresh, fid), timeout=60)
    assert g.status_code == 200 and g.content == data


@pytest.mark.parametrize("method", ["DELETE", "PUT", "POST"])
def test_meta_only_reads(fresh, known, method):
    fid, data = known
    r = requests.request(method, files_url(fresh, fid, "/meta"), timeout=60)
    assert_json_error(r, 405, "method_not_allowed")
    allow = {m.strip() for m in r.headers.get("Allow", "").split(",")}
    assert allow == {"GET", "HEAD"}, r.headers
    assert fresh.rv.meta(fid)
    assert os.path.exists(enc_path(fresh.site.storage, fid))


# ------------------------------------------------------------------ audit

def test_read_is_audited(fresh):
    data = secrets.token_bytes(2500)
    doc = upload(fresh, data, name="a.bin")
    rv = fresh.rv
    mark = rv.audit_mark()
    r = requests.get(files_url(fresh, doc["id"]), timeout=60)
    assert r.status_code == 200 and r.content == data
    e = audit_entries(rv, mark, "file.read", doc["id"])
    assert len(e) == 1, rv.audit_since(mark)
    check_audit(e[0], 200)
    assert e[0]["bytes"] == str(len(data)), e[0]
    fresh.assert_logged(e[0]["request_id"], doc["id"])


# ------------------------------------------------------- tampered storage

def _marker_plain(size):
    line = b"PLAINTEXT-MARKER-%08d|"
    out = b"".join(line % i for i in range(size // len(line % 0) + 1))
    return out[:size]


def _tamper(path, how):
    """Flip a byte of a field, cut, extend or empty the file. A v2 file's
    cipher_* and tag_* are those of its last segment, which is verified
    with the header before the first byte is sent (a segment before it
    damaged cuts the answer instead: test_range.py)."""
    with open(path, "rb") as f:
        blob = bytearray(f.read())
    n = len(blob)
    if blob[:8] == H.MAGIC2:
        segsize = int.from_bytes(blob[88:92], "big")
        seg = n - H.v2_geometry(n, segsize)[1]   # the last segment's start
        flips = {"magic": 3, "key_id": 10, "wrapped_key": 50, "segsize": 90,
                 "iv": 95, "header_tag": 120, "last_iv": seg + 3,
                 "cipher_first": seg + 16,
                 "cipher_middle": seg + 16 + (n - seg - 16 - H.TAG_LEN) // 2}
    else:
        flips = {"magic": 3, "key_id": 10, "wrapped_key": 50, "iv": 95,
                 "cipher_first": H.HEADER_LEN,
                 "cipher_middle": H.HEADER_LEN
                 + (n - H.HEADER_LEN - H.TAG_LEN) // 2}
    flips.update({"cipher_last": n - H.TAG_LEN - 1,
                  "tag_first": n - H.TAG_LEN, "tag_last": n - 1})
    if how in flips:
        blob[flips[how]] ^= 0x01
    elif how.startswith("truncate"):
        del blob[n - int(how[len("truncate"):]):]
    elif how == "append1":
        blob += b"\0"
    elif how == "append16":
        blob += bytes(16)
    elif how == "empty":
        blob = bytearray()
    else:
        raise ValueError(how)
    # keep owner and mode: only the content changes
    with open(path, "r+b") as f:
        f.truncate(0)
        f.write(blob)


def _expect_read_failure(s, fid, marker, rv):
    mark = rv.audit_mark()
    r = requests.get(files_url(s, fid), timeout=60)
    assert_json_error(r, 500, "internal_error")
    assert _without_request_id(r.content) == INTERNAL_ERROR, r.content
    assert marker not in r.content
    h = requests.head(files_url(s, fid), timeout=60)
    assert h.status_code == 500 and h.content == b"", (h.status_code,
                                                       h.headers)
    assert h.headers["Content-Type"].split(";")[0] == "application/json"
    e = audit_entries(rv, mark, "file.read", fid)
    assert len(e) == 2, rv.audit_since(mark)
    for entry in e:
        check_audit(entry, 500, reason="internal_error")
    assert not [x for x in rv.audit_since(mark)
                if x.get("id") == fid and x.get("status") == "200"]
    s.assert_logged(e[0]["request_id"], fid)
    return r


TAMPERED = [
    ("cipher_middle", 100000), ("cipher_first", 100000),
    ("cipher_last", 100000), ("tag_first", 100000), ("tag_last", 100000),
    ("truncate1", 100000), ("truncate32", 100000), ("truncate16", 100000),
    ("append1", 100000), ("append16", 100000), ("empty", 100000),
    ("magic", 100000), ("key_id", 100000), ("wrapped_key", 100000),
    ("iv", 100000),
    ("cipher_middle", 16), ("tag_last", 0), ("truncate32", 0),
    ("cipher_last", 3 * MIB), ("tag_last", 3 * MIB),
]
TAMPERED_V2 = [("segsize", 100000), ("header_tag", 100000),
               ("last_iv", 100000), ("header_tag", 0), ("last_iv", 16)]


@pytest.mark.parametrize("fmt,how,size",
                         [(1, h, n) for h, n in TAMPERED]
                         + [(2, h, n) for h, n in TAMPERED + TAMPERED_V2])
def test_tampered_file_is_500(fmt_stack, fmt, how, size):
    fresh = fmt_stack
    plain = _marker_plain(size)
    doc = upload(fresh, plain, name="secret.txt", ctype="text/plain")
    fid = doc["id"]
    _tamper(enc_path(fresh.site.storage, fid), how)
    _expect_read_failure(fresh, fid, b"PLAINTEXT-MARKER", fresh.rv)
    # the broken file can still be deleted
    d = requests.delete(files_url(fresh, fid), timeout=60)
    assert d.status_code == 204, d.text
    assert not os.path.exists(enc_path(fresh.site.storage, fid))


@pytest.mark.parametrize("off", [16, 56, 87])
def test_corrupt_wrapped_key_under_configured_key_is_500(fresh, off):
    """The header names the configured key (key ids are public), but the
    wrapped data key is corrupt, so its unwrap fails: GET and HEAD are 500
    JSON with an audit entry each, the child keeps serving (in the
    sanitizer build the error log stays free of reports: the failed
    unwrap's wipe once ran 8 bytes past the data key's stack buffer), and
    the stored file and its metadata stay as they were."""
    plain = _marker_plain(70000)
    doc = upload(fresh, plain, name="wk.txt", ctype="text/plain")
    fid = doc["id"]
    path = enc_path(fresh.site.storage, fid)
    with open(path, "rb") as f:
        blob = bytearray(f.read())
    assert bytes(blob[8:16]) == H.key_id(fresh.kek1)
    blob[off] ^= 0x01
    with open(path, "r+b") as f:
        f.write(blob)
    meta = fresh.rv.meta(fid)
    for _ in range(2):      # the same child or another: each one refuses it
        _expect_read_failure(fresh, fid, b"PLAINTEXT-MARKER", fresh.rv)
    with open(path, "rb") as f:
        assert f.read() == bytes(blob)
    assert fresh.rv.meta(fid) == meta
    ok = upload(fresh, b"after", name="after.txt", ctype="text/plain")
    r = requests.get(files_url(fresh, ok["id"]), timeout=60)
    assert r.status_code == 200 and r.content == b"after", r.status_code
    for x in (fid, ok["id"]):
        d = requests.delete(files_url(fresh, x), timeout=60)
        assert d.status_code == 204, d.text


def test_missing_enc_file_is_500(fresh):
    plain = _marker_plain(5000)
    doc = upload(fresh, plain, name="gone.txt", ctype="text/plain")
    fid = doc["id"]
    os.unlink(enc_path(fresh.site.storage, fid))
    _expect_read_failure(fresh, fid, b"PLAINTEXT-MARKER", fresh.rv)
    d = requests.delete(files_url(fresh, fid), timeout=60)
    assert d.status_code == 204, d.text
    assert fresh.rv.meta(fid) == {}


def test_size_mismatch_with_metadata_is_500(fresh):
    plain = _marker_plain(5000)
    doc = upload(fresh, plain, name="sz.txt", ctype="text/plain")
    fid = doc["id"]
    fresh.redis.client().hset(fresh.prefix + "file:" + fid, "size", "5001")
    _expect_read_failure(fresh, fid, b"PLAINTEXT-MARKER", fresh.rv)
    requests.delete(files_url(fresh, fid), timeout=60)


def test_swapped_files_are_500(fresh):
    """A valid file of another id put in place: still the wrong file for
    this metadata (different size), and never served as this one."""
    a = upload(fresh, _marker_plain(3000), name="a.txt", ctype="text/plain")
    b = upload(fresh, b"other content", name="b.txt", ctype="text/plain")
    pa, pb = (enc_path(fresh.site.storage, x["id"]) for x in (a, b))
    with open(pa, "rb") as f:
        blob_a = f.read()
    with open(pb, "r+b") as f:
        f.truncate(0)
        f.write(blob_a)
    _expect_read_failure(fresh, b["id"], b"PLAINTEXT-MARKER", fresh.rv)
    for x in (a, b):
        requests.delete(files_url(fresh, x["id"]), timeout=60)


@pytest.mark.parametrize("fmt,why", [
    (1, "not the file stored under this id"),
    (2, "verification failed")])
def test_swapped_same_size_files_are_500(fmt_stack, fmt, why):
    """A's file copied over B's, both 29 bytes, so it has the size B's
    metadata records. v1: it verifies, but it is not the file uploaded as B
    (its IV is A's); v2: A's id is in its tags, so it does not verify as
    B's (a file of B's id with another nonce: test_range.py). B is refused,
    GET and HEAD, and A's plaintext never leaves."""
    fresh = fmt_stack
    a_plain = b"PLAINTEXT-MARKER of file A 01"
    b_plain = b"the other file, also 29 bytes"
    assert len(a_plain) == len(b_plain) == 29
    a = upload(fresh, a_plain, name="a.txt", ctype="text/plain")
    b = upload(fresh, b_plain, name="b.txt", ctype="text/plain")
    pa, pb = (enc_path(fresh.site.storage, x["id"]) for x in (a, b))
    shutil.copyfile(pa, pb)
    mark = fresh.rv.audit_mark()
    r = _expect_read_failure(fresh, b["id"], b"PLAINTEXT-MARKER", fresh.rv)
    assert b"file A" not in r.content
    e = audit_entries(fresh.rv, mark, "file.read", b["id"])
    fresh.assert_logged(e[-1]["request_id"], why)
    # A is still A
    r = requests.get(files_url(fresh, a["id"]), timeout=60)
    assert r.status_code == 200 and r.content == a_plain
    for x in (a, b):
        requests.delete(files_url(fresh, x["id"]), timeout=60)


def test_metadata_without_iv_still_served(fresh):
    """Metadata written before IVs were recorded: the file is served as
    before (secupload fsck lists it and records the IV)."""
    data = secrets.token_bytes(1000)
    doc = upload(fresh, data, name="old.bin")
    fid = doc["id"]
    fresh.redis.client().hdel(fresh.prefix + "file:" + fid, "iv")
    r = requests.get(files_url(fresh, fid), timeout=60)
    assert r.status_code == 200 and r.content == data
    requests.delete(files_url(fresh, fid), timeout=60)


# -------------------------------------------------------------- owner only

def test_owner_only(fresh):
    data = b"ALICE-PRIVATE " + secrets.token_bytes(500)
    doc = upload(fresh, data, name="alice.bin", path="/auth/", auth=ALICE)
    fid = doc["id"]
    assert fresh.rv.meta(fid).get("user") == "alice"
    url = files_url(fresh, fid, base="/ofiles/")
    murl = files_url(fresh, fid, "/meta", base="/ofiles/")

    r = requests.get(url, auth=ALICE, timeout=60)
    assert r.status_code == 200 and r.content == data
    check_download_headers(r, doc, fresh)
    m = requests.get(murl, auth=ALICE, timeout=60)
    assert m.status_code == 200 and m.json()["user"] == "alice"

    rv = fresh.rv
    mark = rv.audit_mark()
    unknown = requests.get(files_url(fresh, secrets.token_hex(16),
                                     base="/ofiles/"), auth=BOB, timeout=60)
    for resp in (requests.get(url, auth=BOB, timeout=60),
                 requests.get(murl, auth=BOB, timeout=60),
                 requests.delete(url, auth=BOB, timeout=60)):
        assert_json_error(resp, 404, "not_found")
        assert b"ALICE-PRIVATE" not in resp.content
        # indistinguishable from a file that does not exist
        # the same answer as for an unknown id, but for the request's own id
        assert _without_request_id(resp.content) \
            == _without_request_id(unknown.content)
    h = requests.head(url, auth=BOB, timeout=60)
    assert h.status_code == 404 and h.content == b""
    assert os.path.exists(enc_path(fresh.site.storage, fid))
    assert fresh.rv.meta(fid)
    denied = audit_entries(rv, mark, "file.denied", fid)
    assert len(denied) == 4, rv.audit_since(mark)
    for e in denied:
        check_audit(e, 404, user="bob")
    assert not [e for e in rv.audit_since(mark) if e.get("id") == fid
                and e.get("event") != "file.denied"], rv.audit_since(mark)

    for auth in (None, ("bob", "wrong"), ("mallory", "x")):
        u = requests.get(url, auth=auth, timeout=60)
        assert u.status_code == 401, u.status_code
        assert b"ALICE-PRIVATE" not in u.content
        assert "Basic" in u.headers.get("WWW-Authenticate", "")

    # still there for its owner, who may delete it
    assert requests.get(url, auth=ALICE, timeout=60).content == data
    d = requests.delete(url, auth=ALICE, timeout=60)
    assert d.status_code == 204
    assert not os.path.exists(enc_path(fresh.site.storage, fid))
    assert fresh.rv.meta(fid) == {}


def test_owner_only_anonymous_upload_is_nobodys(fresh):
    data = b"anonymous upload"
    doc = upload(fresh, data, name="anon.bin")
    rv = fresh.rv
    mark = rv.audit_mark()
    r = requests.get(files_url(fresh, doc["id"], base="/ofiles/"),
                     auth=ALICE, timeout=60)
    assert_json_error(r, 404, "not_found")
    denied = audit_entries(rv, mark, "file.denied", doc["id"])
    assert denied and denied[0].get("user") == "alice", denied
    # without SecUploadOwnerOnly, the same file is served
    g = requests.get(files_url(fresh, doc["id"]), timeout=60)
    assert g.status_code == 200 and g.content == data


# ------------------------------------------------------------ key rotation

class Rotation:
    """Its own storage, Redis and key files; Apache restarted with the key
    list each step asks for (and stopped at will)."""

    def __init__(self, fmt=None):
        """fmt: SecUploadFormatVersion (None: H.upload_format(); 0: the
        module's default)."""
        self.fmt = H.upload_format() if fmt is None else fmt
        self.site = H.Site("rotate")
        self.redis = H.RedisServer(self.site.root)
        self.prefix = "rot%s:" % secrets.token_hex(3)
        self.k1, self.kek1 = self.site.make_key("k1.key")
        self.k2, self.kek2 = self.site.make_key("k2.key")
        self.apache = None
        self.apaches = []
        self.n = 0
        self.sent = 0  # requests made through url(), for settle()

    def serve(self, keyfiles):
        self.stop_apache()
        lines = ['SecUploadStorageDir "%s"' % self.site.storage]
        lines += ['SecUploadKeyFile "%s"' % k for k in keyfiles]
        lines += ["SecUploadRedisServer 127.0.0.1:%d" % self.redis.port,
                  'SecUploadRedisPrefix "%s"' % self.prefix]
        if self.fmt:
            lines.append("SecUploadFormatVersion %d" % self.fmt)
        body = "\n".join(lines) + "\n" + upload_locations()
        self.n += 1
        conf = self.site.write_conf(self.site.conf_text(body),
                                    name="httpd-%d.conf" % self.n)
        self.apache = H.Apache(self.site, conf).start()
        self.apaches.append(self.apache)
        return self

    def settle(self, timeout=10.0):
        """Wait until every request made so far is logged as done, so that a
        stop never lands in a request (that case has a test of its own)."""
        log = os.path.join(self.site.logs, "access.log")

        def done():
            text = H.Apache.read(log)
            return sum(1 for ln in text.splitlines()
                       if re.search(r'"[A-Z]+ /(api|auth|ofiles)/', ln)) \
                >= self.sent
        H._wait_for(done, timeout)

    def stop_apache(self):
        if self.apache is not None:
            self.settle()
            self.apache.stop()
            self.apache = None

    def url(self, path):
        self.sent += 1
        return self.apache.url(path)

    def meta(self, fid):
        return self.redis.client().hgetall(self.prefix + "file:" + fid)

    def blob(self, fid):
        with open(enc_path(self.site.storage, fid), "rb") as f:
            return f.read()

    def read(self, fid):
        return requests.get(self.url("/api/files/" + fid), timeout=60)

    def stop(self):
        problems = []
        try:
            self.stop_apache()
            for a in self.apaches:
                problems += a.take_problems()
        finally:
            self.redis.stop()
        if not problems:
            self.site.cleanup()
        return problems


def cli_path():
    return os.environ.get("SECUPLOAD_CLI") or os.path.join(H.REPO,
                                                           "secupload")


def cli_unavailable():
    """Why the rewrap CLI cannot be used here, or None."""
    path = cli_path()
    if not os.access(path, os.X_OK):
        return "no secupload CLI at %s (set SECUPLOAD_CLI)" % path
    try:
        p = subprocess.run([path, "rewrap", "--help"], capture_output=True,
                           timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return "secupload rewrap --help failed: %s" % e
    out = (p.stdout + p.stderr).decode("utf-8", "replace")
    if p.returncode != 0 or "--from" not in out or "--to" not in out:
        return "secupload rewrap is not implemented (exit %d): %s" % (
            p.returncode, out[:200])
    return None


@pytest.fixture
def rot(module_so, request):
    """Indirect parameter: the format its servers write (default: as the
    session's)."""
    r = Rotation(getattr(request, "param", None))
    try:
        r.redis.start()
        yield r
    finally:
        report_shutdown(request, r.stop())


def _rotate_to_k2(rot, big=None):
    """K1 only: A (and `big`, if given); then K2 before K1: B under K2, A and
    B both readable."""
    a_plain = b"FILE-A " + secrets.token_bytes(70000)
    b_plain = b"FILE-B " + secrets.token_bytes(12345)
    rot.serve([rot.k1])
    a = upload(rot, a_plain, name="a.bin")
    c = upload(rot, big, name="c.bin") if big is not None else None
    assert rot.blob(a["id"])[8:16] == H.key_id(rot.kek1)
    assert rot.meta(a["id"])["key_id"] == H.key_id(rot.kek1).hex()
    r = rot.read(a["id"])
    assert r.status_code == 200 and r.content == a_plain

    rot.serve([rot.k2, rot.k1])
    b = upload(rot, b_plain, name="b.bin")
    blob_b = rot.blob(b["id"])
    assert blob_b[8:16] == H.key_id(rot.kek2), "B not under the first key"
    assert rot.meta(b["id"])["key_id"] == H.key_id(rot.kek2).hex()
    assert H.decrypt_blob(blob_b, [rot.kek2], b["id"]) == (b_plain, rot.kek2)
    want = H.MAGIC if rot.fmt == 1 else H.MAGIC2
    assert blob_b[:8] == rot.blob(a["id"])[:8] == want
    assert rot.blob(a["id"])[8:16] == H.key_id(rot.kek1)
    for doc, plain in ((a, a_plain), (b, b_plain)):
        r = rot.read(doc["id"])
        assert r.status_code == 200, r.text[:300]
        assert r.content == plain
    return (a, a_plain), (b, b_plain), c


ROT_FORMATS = pytest.mark.parametrize("rot", [0, 1], ids=["v2", "v1"],
                                      indirect=True)


@ROT_FORMATS
def test_key_rotation_in_apache(rot):
    _rotate_to_k2(rot)


def _rewrap(rot):
    p = subprocess.run([cli_path(), "rewrap", "--storage", rot.site.storage,
                        "--from", rot.k1, "--to", rot.k2],
                       capture_output=True, timeout=120)
    out = (p.stdout + p.stderr).decode("utf-8", "replace")
    assert p.returncode == 0, "rewrap exit %d: %s" % (p.returncode, out)
    return out


@ROT_FORMATS
def test_key_rotation_rewrap_cli(rot):
    why = cli_unavailable()
    if why:
        pytest.skip(why)
    c_plain = os.urandom(16 * MIB)
    (a, a_plain), (b, b_plain), c = _rotate_to_k2(rot, big=c_plain)
    files = ((a, a_plain), (b, b_plain), (c, c_plain))
    blob_b = rot.blob(b["id"])
    old_a = rot.blob(a["id"])

    # K2 alone cannot open A yet: 500, not garbage
    rot.serve([rot.k2])
    assert_json_error(rot.read(a["id"]), 500, "internal_error")
    assert rot.read(b["id"]).content == b_plain

    # rewrap while K2,K1 serve, one download running: files are replaced
    # atomically, and the running answer is not disturbed
    rot.serve([rot.k2, rot.k1])
    out = []
    body, declared, complete = _stream_with_pause(
        rot, c["id"], lambda: out.append(_rewrap(rot)))
    assert declared == len(c_plain) and complete
    same = body == c_plain
    assert same, "a download running during rewrap changed"
    for doc, plain in files:
        blob = rot.blob(doc["id"])
        assert blob[8:16] == H.key_id(rot.kek2), (doc["id"], out)
        st = os.stat(enc_path(rot.site.storage, doc["id"]))
        assert stat.S_IMODE(st.st_mode) == 0o600
        assert st.st_uid == H.server_uid()
    ok, kek = H.decrypt_blob(rot.blob(a["id"]), [rot.kek2], a["id"])
    assert ok == a_plain and kek == rot.kek2
    assert rot.blob(b["id"]) == blob_b, "a file already under K2 changed"
    assert not H.stray_files(rot.site.storage), H.stray_files(
        rot.site.storage)

    # a server with only K2 reads everything: the IVs (nonces) recorded at
    # upload are still the files' (a rewrap changes the header's key id,
    # wrapped key and tag, not the IV or nonce)
    rot.serve([rot.k2])
    for doc, plain in files:
        r = rot.read(doc["id"])
        assert r.status_code == 200, r.text[:300]
        same = r.content == plain
        assert same, doc["id"]
        assert rot.meta(doc["id"])["iv"] == bound_value(
            rot.blob(doc["id"])).hex()

    # A's version from before the rewrap put back: the same upload, but
    # under K1, which this server no longer holds
    with open(enc_path(rot.site.storage, a["id"]), "r+b") as f:
        f.truncate(0)
        f.write(old_a)
    assert_json_error(rot.read(a["id"]), 500, "internal_error")


def test_stop_during_download_no_crash(rot):
    """A hard stop (SIGTERM, `apachectl stop`) while an answer streams: the
    children exit without a crash."""
    data = os.urandom(32 * MIB)
    rot.serve([rot.k1])
    doc = upload(rot, data, name="stop.bin")
    rot.settle()
    apache = rot.apache
    g = requests.get(files_url(rot, doc["id"]), stream=True, timeout=60)

    def drain():
        try:
            while g.raw.read(MIB):
                pass
        except Exception:
            pass  # cut off by the stop: fine

    try:
        assert g.status_code == 200
        assert len(g.raw.read(65536)) == 65536
        rot.apache = None
        # the answer is stuck in a blocked write when the stop begins; the
        # client drains it a moment later, so that no MPM waits for it
        t = threading.Timer(0.2, drain)
        t.start()
        apache.stop(graceful=False)
        t.join(60)
    finally:
        g.close()
    problems = apache.take_problems()
    assert not problems, "crash on stop during a download:\n" + "\n".join(
        problems[:10])
