"""Next to mod_deflate, both ways: downloads compressed on the way out
(SetOutputFilter DEFLATE), uploads sent gzip-encoded and inflated on the way
in (SetInputFilter DEFLATE). The module sees the body after Apache's input
filters, so what it encrypts, counts and digests is the inflated
plaintext."""

import gzip
import hashlib
import os
import secrets

import pytest
import requests

import secupload_harness as H
from secupload_stack import Stack, running

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def gz(module_so, request):
    s = Stack("deflate", extra="""
LoadModule deflate_module %s/mod_deflate.so
<Location /gz-files/>
    SetHandler secupload-files
    SecUploadEnable files
    SetOutputFilter DEFLATE
</Location>
<Location /gz-upload/>
    SetHandler secupload
    SecUploadEnable upload
    SetInputFilter DEFLATE
</Location>
<Location /gz-small/>
    SetHandler secupload
    SecUploadEnable upload
    SetInputFilter DEFLATE
    SecUploadMaxSize 1M
    DeflateInflateRatioLimit 100000
</Location>
""" % H.MODULE_DIR)
    yield from running(request, s)


def _upload(s, data):
    r = s.post_raw(data)
    return s.check_stored(r, data)


def test_download_compressed_on_the_way_out(gz):
    data = b"compressible " * (300 * 1024)
    doc = _upload(gz, data)
    r = requests.get(gz.url("/gz-files/" + doc["id"]), timeout=60,
                     headers={"Accept-Encoding": "gzip"}, stream=True)
    assert r.status_code == 200
    assert r.headers.get("Content-Encoding") == "gzip"
    raw = r.raw.read(decode_content=False)
    assert len(raw) < len(data) // 10
    assert gzip.decompress(raw) == data
    # a client that takes no gzip gets the plaintext as it is
    r = requests.get(gz.url("/gz-files/" + doc["id"]), timeout=60,
                     headers={"Accept-Encoding": "identity"})
    assert r.status_code == 200 and "Content-Encoding" not in r.headers
    assert r.content == data


def test_upload_inflated_on_the_way_in(gz):
    data = os.urandom(64 * 1024) + b"\0" * (3 * MIB)
    body = gzip.compress(data)
    r = gz.post(body, {"Content-Type": "application/octet-stream",
                       "Content-Encoding": "gzip"}, path="/gz-upload/")
    doc = gz.check_stored(r, data)
    assert doc["sha256"] == hashlib.sha256(data).hexdigest()


def test_inflated_body_counts_against_the_limit(gz):
    """A small gzip body that inflates far beyond SecUploadMaxSize (a zip
    bomb) is refused as it inflates, with the module's JSON, nothing kept
    (mod_deflate's ratio limit raised, so that the module's count trips)."""
    body = gzip.compress(b"\0" * (64 * MIB))
    assert len(body) < 100 * 1024

    def send():
        return gz.post(body, {"Content-Type": "application/octet-stream",
                              "Content-Encoding": "gzip"}, path="/gz-small/")
    resp, doc = gz.expect_error(send, 413, "too_large")


def test_zip_bomb_refused_by_mod_deflate_is_json_400(gz):
    """With mod_deflate's default DeflateInflateRatioLimit (200), mod_deflate
    refuses the body itself (AH02649, an error to the reader): a 400, still
    the module's JSON, nothing kept."""
    body = gzip.compress(b"\0" * (64 * MIB))

    def send():
        return gz.post(body, {"Content-Type": "application/octet-stream",
                              "Content-Encoding": "gzip"}, path="/gz-upload/")
    gz.expect_error(send, 400, "bad_request")
