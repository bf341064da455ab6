"""Redis goes away and comes back while Apache keeps running. This module has
its own Apache and Redis (with a password and a non-zero database, so AUTH
and SELECT are exercised too)."""

import secrets
import time

import pytest
import requests

import secupload_harness as H
from secupload_stack import Stack, running


@pytest.fixture(scope="module")
def outage(module_so, request):
    s = Stack("outage", redis_password="pw-" + secrets.token_hex(8),
              redis_db=5)
    yield from running(request, s)


def _multipart(s, data):
    return s.post_multipart([H.file_part(data, "o.bin")])[0]


def test_auth_and_select(outage):
    data = secrets.token_bytes(5000)
    doc = outage.check_stored(outage.post_raw(data), data)
    # the hash is in database 5, not in 0
    assert not outage.redis.client(db=0).exists(
        outage.prefix + "file:" + doc["id"])
    # warm up pooled connections in every child
    for _ in range(8):
        d = secrets.token_bytes(100)
        outage.check_stored(outage.post_raw(d), d)


def _assert_unavailable(s, resp, files_before):
    assert resp.status_code == 503, "expected 503, got %d: %s" % (
        resp.status_code, resp.text[:300])
    assert resp.headers.get("content-type", "").split(";")[0] == \
        "application/json"
    doc = resp.json()
    assert doc.get("status") == "error" and doc.get("code") == "unavailable", \
        doc
    ra = resp.headers.get("Retry-After")
    assert ra and ra.strip().isdigit(), "Retry-After: %r" % ra
    H._wait_for(lambda: s.files() == files_before, 2.0)
    assert s.files() == files_before, "left in storage: %r" % sorted(
        set(s.files()) - set(files_before))


def test_redis_down_then_back(outage):
    files_before = outage.files()
    outage.redis.stop()
    try:
        for i in range(6):
            data = secrets.token_bytes(100 * 1024 if i % 2 else 10)
            r = _multipart(outage, data) if i % 3 == 2 else outage.post_raw(data)
            _assert_unavailable(outage, r, files_before)
        assert not H.stray_files(outage.site.storage)
    finally:
        # same port: the module must reconnect on its own
        outage.redis.start()
    assert outage.apache.running
    for i in range(10):
        data = secrets.token_bytes(2000 + i)
        r = _multipart(outage, data) if i % 2 else outage.post_raw(data)
        outage.check_stored(r, data)


def test_one_sentence_for_unavailable(outage):
    """A 503 says the same words whichever handler gives it: the default
    message of its kind, written once in the core."""
    want = "The metadata store is unavailable. Try again later."
    files_before = outage.files()
    outage.redis.stop()
    try:
        up = outage.post_raw(b"x" * 10)
        _assert_unavailable(outage, up, files_before)
        get = requests.get(outage.url("/api/files/" + "0" * 32), timeout=30)
        assert get.status_code == 503, get.text
    finally:
        outage.redis.start()
    assert up.json()["message"] == want, up.json()
    assert get.json()["message"] == want, get.json()


def _slow_body(data, pieces, seconds):
    """A chunked body that takes `seconds` to arrive."""
    step = max(1, len(data) // pieces)
    for i in range(0, len(data), step):
        yield data[i:i + step]
        time.sleep(seconds / pieces)


def test_upload_outlasting_redis_idle_timeout(outage):
    """Redis closes connections idle for over `timeout` seconds, as managed
    Redis services do. An upload whose body takes longer than that must not
    find its metadata write on a closed connection: the connection is not
    held while the body arrives, and the one for the write is checked."""
    client = outage.redis.client()
    client.config_set("timeout", 1)
    try:
        for multipart in (False, True, False):
            data = secrets.token_bytes(300 * 1024)
            if multipart:
                body, ctype = H.multipart([H.file_part(data, "slow.bin")])
            else:
                body, ctype = data, "application/octet-stream"
            r = outage.post(_slow_body(body, 12, 3.0), {"Content-Type": ctype})
            outage.check_stored(r, data)
    finally:
        client.config_set("timeout", 0)
