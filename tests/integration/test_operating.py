"""What an admin operating the module sees: the access log's notes, the
request id shared by an error answer, its audit entry and the error log,
a notice when the module is loaded to serve nothing, and the path of an
upload section without its final slash answered, not Apache's HTML 404."""

import json
import os
import secrets
import time

import pytest
import requests

import secupload_harness as H
from secupload_stack import Stack, running

NOTES_FORMAT = ('LogFormat "%r %>s id=%{secupload-id}n '
                'outcome=%{secupload-outcome}n size=%{secupload-size}n" notes\n'
                'CustomLog "logs/notes.log" notes\n')


@pytest.fixture(scope="module")
def ops(module_so, request):
    yield from running(request, Stack("ops", extra=NOTES_FORMAT))


def _notes(stack, request_line):
    path = os.path.join(stack.site.logs, "notes.log")

    def lines():
        return [ln for ln in H.Apache.read(path).splitlines()
                if ln.startswith(request_line)]
    return H._wait_for(lines, 5.0) or lines()


def test_access_log_notes_of_a_stored_upload_and_a_read(ops):
    data = secrets.token_bytes(1234)
    doc = ops.check_stored(ops.post_raw(data), data)
    fid = doc["id"]
    ln = _notes(ops, "POST /api/upload/ HTTP/1.1 201")
    assert ln and ln[-1].endswith("id=%s outcome=stored size=1234" % fid), ln
    r = requests.get(ops.url("/api/files/" + fid), timeout=30)
    assert r.status_code == 200 and r.content == data
    ln = _notes(ops, "GET /api/files/%s HTTP/1.1 200" % fid)
    assert ln and ln[-1].endswith("id=%s outcome=read size=1234" % fid), ln


def test_access_log_notes_of_a_rejected_upload(ops):
    resp, doc = ops.expect_error(lambda: ops.post(
        b"x" * 2048, {"Content-Type": "text/plain"}, path="/small/"),
        413, "too_large")
    ln = _notes(ops, "POST /small/ HTTP/1.1 413")
    assert ln and " outcome=too_large size=-" in ln[-1], ln


def test_error_answer_carries_the_request_id_of_its_log_and_audit(ops):
    mark = ops.rv.audit_mark()
    resp, doc = ops.expect_error(lambda: ops.post(
        b"x" * 2048, {"Content-Type": "text/plain"}, path="/small/"),
        413, "too_large")
    rid = doc.get("request_id")
    assert rid, doc
    assert resp.headers.get("X-Request-Id") == rid, resp.headers
    entries = [e for e in ops.rv.audit_since(mark)
               if e.get("event") == "upload.rejected"]
    assert entries and entries[-1]["request_id"] == rid, entries
    ops.assert_logged(rid, "too_large")


def test_files_error_answer_carries_the_request_id(ops):
    r = requests.get(ops.url("/api/files/" + "0" * 32), timeout=30)
    assert r.status_code == 404, r.text
    rid = r.json().get("request_id")
    assert rid and r.headers.get("X-Request-Id") == rid, (r.headers, r.text)
    ops.assert_logged(rid, "not_found")


@pytest.mark.parametrize("path", ["/api/upload", "/small"])
def test_upload_path_without_slash_is_redirected_with_308(ops, path):
    """curl -L, browsers and requests keep a POST and its body over 308
    (not over 301/302)."""
    data = secrets.token_bytes(100)
    r = ops.post(data, {"Content-Type": "application/octet-stream"},
                 path=path + "?x=1", allow_redirects=False)
    assert r.status_code == 308, (r.status_code, r.text)
    assert r.headers["Location"] == path + "/?x=1", r.headers
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json()["location"] == path + "/?x=1"
    ops.check_stored(ops.post_raw(data, path=path), data)


def test_files_path_without_slash_is_not_an_html_404(ops):
    r = requests.get(ops.url("/api/files"), timeout=30)
    assert r.headers["Content-Type"].startswith("application/json"), r.text
    assert r.history and r.history[0].status_code == 308, r.history


def test_other_paths_are_left_alone(ops):
    r = requests.get(ops.url("/api/uploadx"), timeout=30,
                     allow_redirects=False)
    assert r.status_code == 404
    assert not r.headers.get("Location")


# ---- start-up notices ----

def _start_and_read(site, body):
    a = H.Apache(site, site.write_conf(site.conf_text(body))).start()
    try:
        assert requests.get(a.url("/hello.txt"), timeout=10).status_code == 200
        time.sleep(0.2)
        return a.read(a.errlog) + a.read(a.outlog)
    finally:
        a.stop()


@pytest.fixture
def site(module_so):
    s = H.Site("notice")
    yield s
    s.cleanup()


def test_notice_when_loaded_without_secuploadenable(site):
    key, _ = site.make_key("k.key")
    out = _start_and_read(site, 'SecUploadStorageDir "%s"\n'
                          'SecUploadKeyFile "%s"\n' % (site.storage, key))
    lines = [ln for ln in out.splitlines() if "SU00341" in ln]
    assert lines and "serves nothing" in lines[0], out


def test_notice_when_enabled_without_storage_and_key(site):
    out = _start_and_read(site, "<Location /api/upload/>\n"
                          "  SetHandler secupload\n"
                          "  SecUploadEnable upload\n</Location>\n")
    assert "SU00342" in out, out
    assert "SU00341" not in out, out


def test_no_notice_when_the_module_serves(site):
    key, _ = site.make_key("k.key")
    out = _start_and_read(site, 'SecUploadStorageDir "%s"\n'
                          'SecUploadKeyFile "%s"\n'
                          "SecUploadRedisServer 127.0.0.1:%d\n"
                          "<Location /api/upload/>\n"
                          "  SetHandler secupload\n"
                          "  SecUploadEnable upload\n</Location>\n"
                          % (site.storage, key, H.free_port()))
    assert "SU00341" not in out and "SU00342" not in out, out


# ---- start-up warnings for modules that would keep an upload's body ----

MODSEC_SO = os.path.join(H.MODULE_DIR, "mod_security2.so")


def _upload_site(site, inside="", outside=""):
    key, _ = site.make_key("k.key")
    return ('SecUploadStorageDir "%s"\nSecUploadKeyFile "%s"\n'
            "SecUploadRedisServer 127.0.0.1:%d\n%s\n"
            "<Location /api/upload/>\n  SetHandler secupload\n"
            "  SecUploadEnable upload\n%s\n</Location>\n"
            % (site.storage, key, H.free_port(), outside, inside))


def _modsec(site, **kw):
    if not os.path.exists(MODSEC_SO):
        pytest.skip("libapache2-mod-security2 is not installed "
                    "(scripts/deps.sh test installs it)")
    kw["outside"] = "LoadModule security2_module %s\n%s" % (
        MODSEC_SO, kw.get("outside", ""))
    return _start_and_read(site, _upload_site(site, **kw))


def test_modsecurity_without_body_access_off_warns(site):
    out = _modsec(site, outside="SecRequestBodyAccess On")
    lines = [ln for ln in out.splitlines() if "SU00343" in ln]
    assert lines and "SecRequestBodyAccess Off" in lines[0], out
    assert "/api/upload/" in lines[0], lines


@pytest.mark.parametrize("where", ["inside", "outside"])
def test_modsecurity_with_body_access_off_is_quiet(site, where):
    kw = {where: "<IfModule security2_module>\nSecRequestBodyAccess Off\n"
                 "</IfModule>"}
    out = _modsec(site, **kw)
    assert "SU00343" not in out, out


def test_proxy_sendcl_with_mod_proxy_warns(site):
    proxy = os.path.join(H.MODULE_DIR, "mod_proxy.so")
    env = os.path.join(H.MODULE_DIR, "mod_env.so")
    out = _start_and_read(site, _upload_site(site, outside=(
        "LoadModule proxy_module %s\nLoadModule env_module %s\n"
        "SetEnv proxy-sendcl 1" % (proxy, env))))
    lines = [ln for ln in out.splitlines() if "SU00344" in ln]
    assert lines and "SetEnv proxy-sendcl" in lines[0], out


def test_mod_proxy_without_proxy_sendcl_is_quiet(site):
    proxy = os.path.join(H.MODULE_DIR, "mod_proxy.so")
    out = _start_and_read(site, _upload_site(site, outside=(
        "LoadModule proxy_module %s\n" % proxy)))
    assert "SU00344" not in out, out
