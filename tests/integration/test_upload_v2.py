"""New uploads are written in format version 2 (docs/format.md): a header
whose nonce is the metadata's `iv`, then segments sealed as they fill, each
tagged with the file's id, its index and whether it is the last. The
default needs no directive; `SecUploadFormatVersion 1` keeps version 1 for
the main server or a virtual host (docs/configuration.md). The checks
decrypt the stored bytes with the harness's own reader of the format."""

import hashlib
import secrets

import pytest
import requests

import secupload_harness as H
from secupload_stack import Stack, running

SEG = 65536
VH = "v1.test"

LIMITED = """
<Location /mid/>
    SetHandler secupload
    SecUploadEnable upload
    SecUploadMaxSize 200K
</Location>
"""

# the first virtual host stands for the main server; v1.test keeps version 1
VHOSTS = """
<VirtualHost *:*>
    ServerName 127.0.0.1
</VirtualHost>
<VirtualHost *:*>
    ServerName %s
    SecUploadFormatVersion 1
    <Location /v1up/>
        SetHandler secupload
        SecUploadEnable upload
    </Location>
</VirtualHost>
""" % VH


@pytest.fixture(scope="module")
def v2(module_so, request):
    """A server without SecUploadFormatVersion: the module's default."""
    s = Stack("v2", format_version=0, extra=LIMITED + VHOSTS)
    s.format_version = 2
    yield from running(request, s)


def stored_blob(s, fid):
    with open(s.site.storage + "/%s/%s.enc" % (fid[:2], fid), "rb") as f:
        return f.read()


@pytest.mark.parametrize("size", [0, 1, 16, SEG - 1, SEG, SEG + 1, 3 * SEG,
                                  3 * SEG + 5, 5 * 1024 * 1024 + 7])
def test_raw_upload_is_v2(v2, size):
    plain = secrets.token_bytes(size)
    doc = v2.check_stored(v2.post_raw(plain), plain)
    blob = stored_blob(v2, doc["id"])
    assert blob[:8] == H.MAGIC2
    assert int.from_bytes(blob[88:92], "big") == SEG
    nseg, _ = H.v2_geometry(len(blob), SEG)
    assert nseg == max(1, -(-size // SEG))
    assert v2.rv.meta(doc["id"])["iv"] == blob[92:108].hex()


def test_multipart_and_chunked_upload_are_v2(v2):
    plain = secrets.token_bytes(2 * SEG + 100)
    resp, _ = v2.post_multipart([H.field_part("a", "1"),
                                 H.file_part(plain, "m.bin")])
    v2.check_stored(resp, plain, name="m.bin")
    resp = requests.post(v2.url(), timeout=60,
                         data=(plain[i:i + 1000] for i in range(0, len(plain), 1000)),
                         headers={"Content-Type": "application/octet-stream"})
    v2.check_stored(resp, plain)


def test_every_upload_has_its_own_nonce_and_ivs(v2):
    plain = b"\0" * (SEG + 1)
    a = stored_blob(v2, v2.check_stored(v2.post_raw(plain), plain)["id"])
    b = stored_blob(v2, v2.check_stored(v2.post_raw(plain), plain)["id"])
    assert a[92:108] != b[92:108]
    ivs = {a[140:156], a[140 + SEG + 48:156 + SEG + 48], b[140:156]}
    assert len(ivs) == 3


def test_file_bound_to_its_id(v2):
    """Every tag binds the id: the same bytes under another name do not
    verify."""
    plain = secrets.token_bytes(1000)
    doc = v2.check_stored(v2.post_raw(plain), plain)
    blob = stored_blob(v2, doc["id"])
    with pytest.raises(H.FormatError):
        H.decrypt_blob(blob, v2.keks, secrets.token_hex(16))


def test_vhost_keeps_version_1(v2):
    plain = secrets.token_bytes(SEG + 3)
    resp = requests.post(v2.url("/v1up/"), data=plain, timeout=60,
                         headers={"Content-Type": "application/octet-stream",
                                  "Host": VH})
    v2.format_version = 1
    try:
        doc = v2.check_stored(resp, plain)
    finally:
        v2.format_version = 2
    blob = stored_blob(v2, doc["id"])
    assert blob[:8] == H.MAGIC
    assert len(blob) == H.HEADER_LEN + (len(plain) // 16 + 1) * 16 + H.TAG_LEN


def test_too_large_v2_upload_keeps_nothing(v2):
    """A body past the limit after some segments were written: the temp
    file goes, no metadata is written."""
    v2.expect_error(lambda: v2.post(
        (secrets.token_bytes(SEG) for _ in range(4)),
        {"Content-Type": "application/octet-stream"}, path="/mid/"),
        413, "too_large")


def test_v2_upload_cut_short_keeps_nothing(v2):
    files_before, keys_before = v2.files(), v2.rv.file_keys()
    c = H.RawConn(v2.apache.port)
    c.send(b"POST /api/upload/ HTTP/1.1\r\nHost: x\r\nContent-Type: "
           b"application/octet-stream\r\nContent-Length: 1000000\r\n\r\n"
           + secrets.token_bytes(3 * SEG + 10))
    c.close(reset=True)
    v2.assert_nothing_kept(files_before, keys_before, settle=5.0)


@pytest.fixture(scope="module")
def v1(module_so, request):
    s = Stack("v1", format_version=1)
    yield from running(request, s)


def test_format_version_1_writes_version_1(v1):
    plain = secrets.token_bytes(SEG * 2)
    doc = v1.check_stored(v1.post_raw(plain), plain)
    blob = stored_blob(v1, doc["id"])
    assert blob[:8] == H.MAGIC
    assert v1.rv.meta(doc["id"])["iv"] == blob[88:104].hex()
    assert hashlib.sha256(plain).hexdigest() == doc["sha256"]


def _cli():
    import os
    return os.environ.get("SECUPLOAD_CLI") or os.path.join(H.REPO, "secupload")


def _serves_v2(s):
    """Does this build's files handler read version 2 yet? (A v2 upload
    read back through it.)"""
    plain = b"probe"
    doc = s.check_stored(s.post_raw(plain), plain)
    r = requests.get(s.url("/api/files/" + doc["id"]), timeout=30)
    return r.status_code == 200 and r.content == plain


def test_converted_file_keeps_its_metadata_and_is_served(v1, v2):
    """secupload convert on the storage of a server writing version 1: the
    file becomes version 2 under the same key, its IV kept as the nonce, so
    the metadata (iv, key_id, size, sha256) needs no change and the files
    handler serves it as the same id."""
    import subprocess
    plain = secrets.token_bytes(3 * SEG + 11)
    doc = v1.check_stored(v1.post_raw(plain), plain)
    fid, meta = doc["id"], v1.rv.meta(doc["id"])
    path = v1.site.storage + "/%s/%s.enc" % (fid[:2], fid)
    import os
    owner = os.stat(path).st_uid
    r = subprocess.run([_cli(), "convert", "--key", v1.key1, "--key", v1.key2,
                        v1.site.storage], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r
    assert "converted " + fid in r.stdout, r.stdout
    blob = stored_blob(v1, fid)
    assert blob[:8] == H.MAGIC2
    assert H.decrypt_blob(blob, v1.keks, fid) == (plain, v1.kek1)
    assert blob[92:108].hex() == meta["iv"]
    assert v1.rv.meta(fid) == meta
    assert os.stat(path).st_uid == owner
    assert not H.stray_files(v1.site.storage)
    if not _serves_v2(v2):
        pytest.skip("the files handler of this build does not read version 2")
    resp = requests.get(v1.url("/api/files/" + fid), timeout=60)
    assert resp.status_code == 200 and resp.content == plain
