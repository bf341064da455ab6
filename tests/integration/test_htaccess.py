"""A .htaccess cannot open the handlers: `SetHandler secupload` and
`SetHandler secupload-files` need only `AllowOverride FileInfo`, so the
module serves only where the admin's `SecUploadEnable` names that very
handler, a directive no .htaccess may hold. A handler name alone declines
(SU00240): no stored byte goes out, no upload is kept, nothing is deleted."""

import hashlib
import os
import secrets

import pytest
import requests

import secupload_harness as H
from secupload_stack import Stack, running

# Directories a user may configure through .htaccess. /dirup/ is the admin's
# own upload directory (enabled for the upload handler only), whose
# subdirectories users may configure too.
EXTRA = """
<Directory "%(htdocs)s/users">
    AllowOverride FileInfo
</Directory>
<Directory "%(htdocs)s/nonfatal">
    AllowOverride FileInfo Nonfatal=Override
</Directory>
<Directory "%(htdocs)s/listed">
    AllowOverride None
    AllowOverrideList SetHandler SecUploadEnable
</Directory>
<Directory "%(htdocs)s/dirup">
    SetHandler secupload
    SecUploadEnable upload
    AllowOverride FileInfo
</Directory>
"""

HTACCESS = {
    "users/files": "SetHandler secupload-files\n",
    "users/upload": "SetHandler secupload\n",
    "dirup/sub": "SetHandler secupload-files\n",
    "users/enable": "SetHandler secupload-files\nSecUploadEnable files\n",
    "users/ifenable": 'SetHandler secupload-files\n<If "true">\n'
                      "    SecUploadEnable files\n</If>\n",
    "nonfatal": "SetHandler secupload-files\nSecUploadEnable files\n",
    "listed": "SetHandler secupload-files\nSecUploadEnable files\n",
}


@pytest.fixture(scope="module")
def hs(module_so, request):
    s = Stack("htaccess")
    with open(s.apache.conf_path, "a") as f:
        f.write(EXTRA % {"htdocs": s.site.htdocs})
    for rel, text in HTACCESS.items():
        d = os.path.join(s.site.htdocs, rel)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, ".htaccess"), "w") as f:
            f.write(text)
    yield from running(request, s)


@pytest.fixture
def stored(hs):
    """A file stored through the admin's /api/upload/: (id, plaintext, doc)."""
    plain = b"htaccess-secret-" + secrets.token_hex(24).encode()
    r = hs.post_raw(plain)
    doc = hs.check_stored(r, plain)
    return doc["id"], plain, doc


def log_mark(s):
    return len(s.apache.log_text())


def log_since(s, mark):
    return s.apache.log_text()[mark:]


def assert_not_served(resp, plain, doc):
    assert resp.status_code != 200, (resp.status_code, resp.content[:300])
    assert plain not in resp.content
    assert doc["sha256"].encode() not in resp.content
    assert doc["id"].encode() not in resp.content


def assert_still_stored(s, fid, plain):
    assert os.path.exists(os.path.join(s.site.storage, fid[:2],
                                       fid + ".enc"))
    assert s.rv.meta(fid), "metadata of %s is gone" % fid
    r = requests.get(s.url("/api/files/" + fid), timeout=30)
    assert r.status_code == 200 and r.content == plain


def test_files_handler_named_in_htaccess_serves_nothing(hs, stored):
    fid, plain, doc = stored
    mark = log_mark(hs)
    for suffix in ("", "/meta"):
        r = requests.get(hs.url("/users/files/" + fid + suffix), timeout=30)
        assert_not_served(r, plain, doc)
    r = requests.head(hs.url("/users/files/" + fid), timeout=30)
    assert r.status_code != 200, r.status_code
    r = requests.delete(hs.url("/users/files/" + fid), timeout=30)
    assert r.status_code != 204, r.status_code
    assert_not_served(r, plain, doc)
    assert_still_stored(hs, fid, plain)
    lines = [ln for ln in log_since(hs, mark).splitlines() if "SU00240" in ln]
    assert lines and all(":warn]" in ln for ln in lines), lines
    assert "SetHandler secupload-files is ignored here: no SecUploadEnable " \
        "applies" in lines[0], lines[0]


@pytest.mark.parametrize("kind", ["raw", "multipart"])
def test_upload_handler_named_in_htaccess_keeps_nothing(hs, kind):
    files_before, keys_before = hs.files(), hs.rv.file_keys()
    mark = log_mark(hs)
    plain = b"not to be kept " + secrets.token_bytes(32)
    if kind == "raw":
        r = hs.post_raw(plain, path="/users/upload/")
    else:
        r, _ = hs.post_multipart([H.file_part(plain)], path="/users/upload/")
    assert r.status_code != 201, (r.status_code, r.text[:300])
    assert "Location" not in r.headers
    hs.assert_nothing_kept(files_before, keys_before)
    assert "SU00240" in log_since(hs, mark)


def test_htaccess_cannot_switch_an_enabled_directory(hs, stored):
    """/dirup/ is the admin's upload directory: a .htaccess below it that
    names the files handler does not make it serve stored files."""
    fid, plain, doc = stored
    mark = log_mark(hs)
    for suffix in ("", "/meta"):
        r = requests.get(hs.url("/dirup/sub/" + fid + suffix), timeout=30)
        assert_not_served(r, plain, doc)
    r = requests.delete(hs.url("/dirup/sub/" + fid), timeout=30)
    assert r.status_code != 204, r.status_code
    assert_still_stored(hs, fid, plain)
    assert "SetHandler secupload-files is ignored here: SecUploadEnable is " \
        "upload" in log_since(hs, mark)
    # the admin's own section still takes uploads
    more = b"through the admin's directory " + secrets.token_bytes(16)
    hs.check_stored(hs.post_raw(more, path="/dirup/"), more)


def _refused(hs, rel, fid, plain, doc):
    """A request into rel, whose .htaccess tries SecUploadEnable: Apache's
    answer and the error log since."""
    mark = log_mark(hs)
    r = requests.get(hs.url("/%s/%s" % (rel, fid)), timeout=30)
    assert_not_served(r, plain, doc)
    assert_still_stored(hs, fid, plain)
    return r, log_since(hs, mark)


@pytest.mark.parametrize("rel,message", [
    # AllowOverride FileInfo: SetHandler is allowed, SecUploadEnable is not
    ("users/enable", "SecUploadEnable not allowed here"),
    ("users/ifenable", "SecUploadEnable not allowed in <If> context"),
    # AllowOverrideList names it: the directive refuses itself
    ("listed", "SecUploadEnable cannot occur within htaccess files"),
])
def test_enable_refused_in_htaccess(hs, stored, rel, message):
    fid, plain, doc = stored
    r, log = _refused(hs, rel, fid, plain, doc)
    assert r.status_code == 500, (r.status_code, r.text[:300])
    assert message in log, log[-2000:]
    # Apache logs a bad .htaccess at alert level: expected here, and only it
    problems = hs.apache.take_problems()
    assert problems and all(".htaccess" in p and message in p
                            for p in problems), problems


def test_enable_ignored_under_nonfatal_override(hs, stored):
    """AllowOverride Nonfatal=Override: Apache skips the directive with a
    warning instead of a 500; the handler name alone still does nothing."""
    fid, plain, doc = stored
    r, log = _refused(hs, "nonfatal", fid, plain, doc)
    assert r.status_code == 404, (r.status_code, r.text[:300])
    assert "SecUploadEnable in .htaccess forbidden by AllowOverride" in log
    assert "SU00240" in log


def test_enable_values_checked(module_so):
    site = H.Site("enable")
    try:
        key, _ = site.make_key("k.key")
        for value, ok in [("upload", True), ("files", True), ("Off", True),
                          ("FILES", True), ("On", False), ("yes", False)]:
            body = "\n".join([
                'SecUploadStorageDir "%s"' % site.storage,
                'SecUploadKeyFile "%s"' % key,
                "<Location /x/>", "    SetHandler secupload-files",
                "    SecUploadEnable %s" % value, "</Location>"])
            rc, out = H.config_test(site.write_conf(site.conf_text(body)))
            assert (rc == 0) == ok, (value, out)
            if not ok:
                assert "SecUploadEnable: '%s' is not one of upload, files, " \
                    "tus, Off" % value in out, out
    finally:
        site.cleanup()


def test_enable_off_in_a_nested_section(module_so):
    """SecUploadEnable Off below an enabled section switches it off again."""
    s = Stack("enableoff", extra="<Location /api/files/off/>\n"
              "    SecUploadEnable Off\n</Location>\n")
    s.start()
    try:
        p2 = b"nested off " + secrets.token_bytes(16)
        d2 = s.check_stored(s.post_raw(p2), p2)
        r = requests.get(s.url("/api/files/off/" + d2["id"]), timeout=30)
        assert_not_served(r, p2, d2)
        assert "SetHandler secupload-files is ignored here: SecUploadEnable " \
            "is Off" in s.apache.log_text()
        r = requests.get(s.url("/api/files/" + d2["id"]), timeout=30)
        assert r.status_code == 200 and r.content == p2
        assert hashlib.sha256(r.content).hexdigest() == d2["sha256"]
    finally:
        problems = s.stop()
    assert not problems, problems
