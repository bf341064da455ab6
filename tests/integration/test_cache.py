"""Next to mod_cache: every answer of the module says `Cache-Control:
no-store`, so a `CacheEnable disk` over its paths keeps nothing. A cached
/meta would be answered from mod_cache's quick handler, before
authentication and SecUploadOwnerOnly, and after the file was deleted."""

import os
import secrets
import time

import pytest
import requests

import secupload_harness as H
from secupload_stack import Stack, running

CACHE_CONF = """
LoadModule cache_module %(mods)s/mod_cache.so
LoadModule cache_disk_module %(mods)s/mod_cache_disk.so
CacheRoot "%(root)s"
CacheEnable disk /api/
# cache answers that carry no validator or expiry too (a common setting):
# only Cache-Control keeps the module's answers out
CacheIgnoreNoLastMod On
CacheDefaultExpire 3600
CacheHeader On
"""


@pytest.fixture(scope="module")
def cs(module_so, request):
    s = Stack("cache")
    root = os.path.join(s.site.root, "cache")
    os.mkdir(root, 0o755)
    H._chown_server_user(root)
    s.cache_root = root
    with open(s.apache.conf_path, "a") as f:
        f.write(CACHE_CONF % {"mods": H.MODULE_DIR, "root": root})
    yield from running(request, s)


def no_store(resp):
    tokens = [t.strip().lower()
              for t in resp.headers.get("Cache-Control", "").split(",")]
    return "no-store" in tokens


def cache_holds(root, needles):
    """The cache files (relative paths) that hold any of needles."""
    hits = []
    for dirpath, _, files in os.walk(root):
        for fn in files:
            with open(os.path.join(dirpath, fn), "rb") as f:
                data = f.read()
            if any(n in data for n in needles):
                hits.append(os.path.relpath(os.path.join(dirpath, fn), root))
    return hits


def test_cache_really_caches_here(cs):
    """The control: Apache's own static file under /api/ is cached."""
    d = os.path.join(cs.site.htdocs, "api")
    os.makedirs(d, exist_ok=True)
    marker = secrets.token_hex(16).encode()
    path = os.path.join(d, "static.txt")
    with open(path, "wb") as f:
        f.write(marker)
    # a day old: fresh for a tenth of that by mod_cache's heuristic
    os.utime(path, (time.time() - 86400,) * 2)
    for _ in range(2):
        r = requests.get(cs.url("/api/static.txt"), timeout=30)
        assert r.status_code == 200 and r.content == marker
    assert r.headers.get("X-Cache", "").startswith("HIT"), r.headers
    assert cache_holds(cs.cache_root, [marker])


def test_meta_not_cached_after_delete(cs):
    plain = b"cached? " + secrets.token_bytes(32)
    name = "cache-%s.bin" % secrets.token_hex(6)
    stored = requests.post(
        cs.url("/api/upload/"), data=plain, timeout=30,
        headers={"Content-Type": "application/octet-stream",
                 "Content-Disposition": 'attachment; filename="%s"' % name})
    doc = cs.check_stored(stored, plain, name=name)
    fid = doc["id"]
    meta_url = cs.url("/api/files/%s/meta" % fid)
    metas = [requests.get(meta_url, timeout=30) for _ in range(2)]
    for r in metas:
        assert r.status_code == 200 and r.json()["id"] == fid
    r = requests.get(cs.url("/api/files/" + fid), timeout=30)
    assert r.status_code == 200 and r.content == plain
    assert requests.delete(cs.url("/api/files/" + fid),
                           timeout=30).status_code == 204
    gone = requests.get(meta_url, timeout=30)
    assert gone.status_code == 404, "after DELETE: %d %s (X-Cache: %s)" % (
        gone.status_code, gone.text, gone.headers.get("X-Cache"))
    assert gone.json()["code"] == "not_found"
    needles = [fid.encode(), doc["sha256"].encode(), name.encode(), plain]
    assert not cache_holds(cs.cache_root, needles), \
        "the cache keeps the file's data: %r" % cache_holds(cs.cache_root,
                                                            needles)
    for r in [stored] + metas + [gone]:
        assert no_store(r), r.headers
        assert not r.headers.get("X-Cache", "").startswith("HIT"), r.headers


@pytest.mark.parametrize("method,path,status", [
    ("GET", "/api/files/%s" % ("0" * 32), 404),
    ("GET", "/api/files/%s/meta" % ("0" * 32), 404),
    ("GET", "/api/files/not-an-id", 404),
    ("PUT", "/api/files/%s" % ("0" * 32), 405),
    ("GET", "/api/upload/", 405),
])
def test_error_answers_say_no_store(cs, method, path, status):
    r = requests.request(method, cs.url(path), timeout=30)
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers.get("Content-Type", "").startswith("application/json")
    assert no_store(r), r.headers
    r2 = requests.request(method, cs.url(path), timeout=30)
    assert not r2.headers.get("X-Cache", "").startswith("HIT"), r2.headers


def test_upload_error_says_no_store(cs):
    files_before, keys_before = cs.files(), cs.rv.file_keys()
    r = requests.post(cs.url("/api/upload/"), data=b"x", timeout=30,
                      headers={"Content-Type": "multipart/form-data"})
    assert r.status_code == 400, (r.status_code, r.text)
    assert no_store(r), r.headers
    cs.assert_nothing_kept(files_before, keys_before)
