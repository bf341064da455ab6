"""CORS (docs/api.md, "Cross-origin requests"): SecUploadCorsOrigins names
the origins whose pages may call a handler. A preflight is answered 204 with
the allow headers for such an origin and without them for any other; an
actual answer carries Access-Control-Allow-Origin and -Expose-Headers for an
allowed origin only; where no origin is configured nothing changes (an
OPTIONS is a 405, as before)."""

import pytest
import requests

import secupload_harness as H
from secupload_stack import Stack, running

APP = "https://app.example.com"
OTHER = "https://evil.example.net"

LOCATIONS = """
<Location /cors/up/>
    SetHandler secupload
    SecUploadEnable upload
    SecUploadCorsOrigins %(app)s http://127.0.0.1:8443
</Location>
<Location /cors/files/>
    SetHandler secupload-files
    SecUploadEnable files
    SecUploadCorsOrigins %(app)s
</Location>
<Location /cors/any/>
    SetHandler secupload
    SecUploadEnable upload
    SecUploadCorsOrigins *
</Location>
<Location /cors/up/none/>
    SecUploadCorsOrigins None
</Location>
<Location /cors/auth/>
    SetHandler secupload
    SecUploadEnable upload
    SecUploadCorsOrigins %(app)s
    AuthType Basic
    AuthName "uploads"
    AuthBasicProvider file
    AuthUserFile "%(htpasswd)s"
    Require valid-user
</Location>
"""

CORS_HEADERS = ("access-control-allow-origin", "access-control-allow-methods",
                "access-control-allow-headers", "access-control-max-age",
                "access-control-expose-headers",
                "access-control-allow-credentials")


@pytest.fixture(scope="module")
def cs(module_so, request):
    s = Stack("cors")
    # the Locations name the stack's htpasswd: added once it exists
    with open(s.apache.conf_path, "a") as f:
        f.write(LOCATIONS % {"app": APP, "htpasswd": s.htpasswd})
    yield from running(request, s)


def preflight(s, path, origin, method="POST", headers="content-type"):
    h = {"Access-Control-Request-Method": method,
         "Access-Control-Request-Headers": headers}
    if origin:
        h["Origin"] = origin
    return requests.options(s.url(path), headers=h, timeout=30)


def no_cors_headers(resp):
    return [h for h in CORS_HEADERS if h in resp.headers]


def upload(s, path="/cors/up/", origin=APP, data=b"cors body\n", **kw):
    h = {"Content-Type": "application/octet-stream",
         "Content-Disposition": 'attachment; filename="c.txt"'}
    if origin:
        h["Origin"] = origin
    return requests.post(s.url(path), data=data, headers=h, timeout=30, **kw)


def test_preflight_upload_allowed_origin(cs):
    r = preflight(cs, "/cors/up/", APP)
    assert r.status_code == 204, r.text
    assert r.headers["Access-Control-Allow-Origin"] == APP
    assert r.headers["Access-Control-Allow-Credentials"] == "true"
    assert r.headers["Access-Control-Allow-Methods"] == "POST"
    allowed = [x.strip().lower() for x in
               r.headers["Access-Control-Allow-Headers"].split(",")]
    for h in ("content-type", "content-disposition", "content-digest",
              "repr-digest", "authorization"):
        assert h in allowed, allowed
    assert int(r.headers["Access-Control-Max-Age"]) > 0
    assert "origin" in r.headers["Vary"].lower()
    assert r.content == b""
    # the second origin of the list is allowed too, compared without case
    r = preflight(cs, "/cors/up/", "HTTP://127.0.0.1:8443")
    assert r.headers["Access-Control-Allow-Origin"] == "HTTP://127.0.0.1:8443"


def test_preflight_files_allowed_origin(cs):
    r = preflight(cs, "/cors/files/" + "0" * 32, APP, method="DELETE",
                  headers="authorization")
    assert r.status_code == 204, r.text
    assert r.headers["Access-Control-Allow-Origin"] == APP
    assert r.headers["Access-Control-Allow-Methods"] == "GET, HEAD, DELETE"
    assert r.headers["Allow"] == "GET, HEAD, DELETE"


def test_preflight_disallowed_origin(cs):
    """204 without any allow header (the browser then refuses the call),
    and the log says why."""
    for path in ("/cors/up/", "/cors/files/x"):
        r = preflight(cs, path, OTHER)
        assert r.status_code == 204, r.text
        assert no_cors_headers(r) == [], r.headers
        assert "origin" in r.headers["Vary"].lower()
    H._wait_for(lambda: "SU00380" in cs.apache.log_text()
                and OTHER in cs.apache.log_text(), 5)
    assert "SU00380" in cs.apache.log_text()


def test_preflight_before_authentication(cs):
    """A preflight carries no credentials: answered where the handler needs
    a user, the actual call then is authenticated."""
    r = preflight(cs, "/cors/auth/", APP, headers="authorization")
    assert r.status_code == 204, r.text
    assert r.headers["Access-Control-Allow-Origin"] == APP
    r = upload(cs, "/cors/auth/")
    assert r.status_code == 401
    # the page can read that it must log in
    assert r.headers["Access-Control-Allow-Origin"] == APP


def test_options_without_cors_is_405(cs):
    """Not a preflight (no Origin, or no Access-Control-Request-Method), or
    a location without origins: the handler's 405 with Allow, as before."""
    rv = cs.rv
    files_before, keys_before = cs.files(), rv.file_keys()
    for path, origin, acrm in (("/cors/up/", None, True),
                               ("/cors/up/", APP, False),
                               ("/api/upload/", APP, True),
                               ("/cors/up/none/", APP, True)):
        h = {"Origin": origin} if origin else {}
        if acrm:
            h["Access-Control-Request-Method"] = "POST"
        r = requests.options(cs.url(path), headers=h, timeout=30)
        assert r.status_code == 405, (path, r.text)
        assert r.headers["Allow"] == "POST"
        assert r.json()["code"] == "method_not_allowed"
        # an OPTIONS from an allowed origin is an actual request: readable
        assert ("access-control-allow-origin" in r.headers) == \
            (path == "/cors/up/" and origin is not None), path
        assert "access-control-allow-methods" not in r.headers, path
    cs.assert_nothing_kept(files_before, keys_before)


def test_actual_post_and_get_allowed_origin(cs):
    r = upload(cs)
    assert r.status_code == 201, r.text
    assert r.headers["Access-Control-Allow-Origin"] == APP
    assert r.headers["Access-Control-Allow-Credentials"] == "true"
    exposed = [x.strip().lower() for x in
               r.headers["Access-Control-Expose-Headers"].split(",")]
    for h in ("location", "x-request-id", "content-disposition",
              "content-length", "upload-offset"):
        assert h in exposed, exposed
    assert "origin" in r.headers["Vary"].lower()
    fid = r.json()["id"]
    g = requests.get(cs.url("/cors/files/" + fid), headers={"Origin": APP},
                     timeout=30)
    assert g.status_code == 200
    assert g.content == b"cors body\n"
    assert g.headers["Access-Control-Allow-Origin"] == APP
    assert "content-disposition" in \
        g.headers["Access-Control-Expose-Headers"].lower()
    # an error answer is readable by the page too
    e = requests.get(cs.url("/cors/files/" + "f" * 32),
                     headers={"Origin": APP}, timeout=30)
    assert e.status_code == 404
    assert e.headers["Access-Control-Allow-Origin"] == APP


def test_actual_disallowed_and_no_origin(cs):
    """No allow header for another origin, nor without Origin (curl, a
    same-origin GET): CORS only tells browsers what a page may read."""
    r = upload(cs, origin=OTHER)
    assert r.status_code == 201, r.text
    assert no_cors_headers(r) == [], r.headers
    fid = r.json()["id"]
    g = requests.get(cs.url("/cors/files/" + fid), timeout=30)
    assert g.status_code == 200
    assert no_cors_headers(g) == [], g.headers
    assert "origin" in g.headers["Vary"].lower()


def test_star_allows_any_origin_without_credentials(cs):
    r = preflight(cs, "/cors/any/", OTHER)
    assert r.status_code == 204
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in r.headers
    r = upload(cs, "/cors/any/", origin=OTHER)
    assert r.status_code == 201, r.text
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in r.headers


def test_no_origins_configured_no_headers(cs):
    r = upload(cs, "/api/upload/")
    assert r.status_code == 201, r.text
    assert no_cors_headers(r) == [], r.headers
    assert "origin" not in r.headers.get("Vary", "").lower()


@pytest.mark.parametrize("value", [
    "https://app.example.com/", "https://app.example.com/path", "null",
    "app.example.com", "https://", "https://a b", "https://u@h"])
def test_bad_origin_refused_by_config_test(module_so, value):
    site = H.Site("corsconf")
    try:
        key, _ = site.make_key("k.key")
        conf = site.write_conf(site.conf_text("\n".join([
            'SecUploadStorageDir "%s"' % site.storage,
            'SecUploadKeyFile "%s"' % key,
            "<Location /u/>", "SetHandler secupload", "SecUploadEnable upload",
            "SecUploadCorsOrigins %s" % value, "</Location>"])))
        rc, out = H.config_test(conf)
        assert rc != 0, out
        assert "SecUploadCorsOrigins" in out and "is not an origin" in out, out
    finally:
        site.cleanup()
