"""Next to ModSecurity (Debian's libapache2-mod-security2, its recommended
configuration, and the OWASP CRS from modsecurity-crs): the plaintext of an
upload or a download never reaches ModSecurity's temp files, data dir or
audit log, and the answers stay the module's JSON. What is tried is what
conf/secupload_module.conf ships: its `<IfModule security2_module>` blocks are
taken from that file as they are.

A control location without those settings shows that the check can fail:
there ModSecurity spools the body of a large upload to its SecTmpDir while
it arrives."""

import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time

import pytest
import requests

import secupload_harness as H
from secupload_stack import Stack, running

HERE = os.path.dirname(os.path.abspath(__file__))
SHIPPED = os.path.join(HERE, "..", "..", "conf", "secupload_module.conf")
RECOMMENDED = "/etc/modsecurity/modsecurity.conf-recommended"
CRS_SETUP = "/etc/modsecurity/crs/crs-setup.conf"
CRS_RULES = "/usr/share/modsecurity-crs/rules"
MODSEC_SO = os.path.join(H.MODULE_DIR, "mod_security2.so")
MB = 1000 * 1000


def _shipped_blocks():
    """The <IfModule security2_module> blocks of the shipped conf, in order:
    server level, upload location, files location."""
    with open(SHIPPED) as f:
        text = f.read()
    blocks = re.findall(r"^\s*<IfModule security2_module>\n.*?</IfModule>\n",
                        text, flags=re.S | re.M)
    assert len(blocks) == 3, blocks
    return blocks


def _modsec_conf(d, crs):
    """The recommended configuration, its paths in the test's private dirs."""
    with open(RECOMMENDED) as f:
        text = f.read()
    for name, val in (("SecTmpDir", d["tmp"]), ("SecDataDir", d["data"]),
                      ("SecAuditLog", os.path.join(d["audit"], "audit.log")),
                      ("SecUnicodeMapFile", "/etc/modsecurity/unicode.mapping 20127")):
        text = re.sub(r"^%s .*$" % name, "%s %s" % (name, val), text, flags=re.M)
    if crs:
        text += "\nInclude %s\nInclude %s/*.conf\n" % (CRS_SETUP, CRS_RULES)
    path = os.path.join(d["root"], "modsecurity.conf")
    with open(path, "w") as f:
        f.write(text)
    return path


@pytest.fixture(scope="module", params=["recommended", "crs"])
def ms(module_so, request):
    if not os.path.exists(MODSEC_SO) or not os.path.exists(RECOMMENDED):
        pytest.skip("libapache2-mod-security2 is not installed (scripts/deps.sh "
                    "installs it)")
    crs = request.param == "crs"
    if crs and not os.path.isdir(CRS_RULES):
        pytest.skip("modsecurity-crs is not installed")
    if os.environ.get("SECUPLOAD_LD_PRELOAD"):
        # ModSecurity's own start-up allocations (its regular expressions,
        # pcre2_compile; its libcurl) are never freed, and LeakSanitizer
        # reports them when each process exits: the default build's pass
        # runs these tests
        pytest.skip("under a sanitizer runtime: ModSecurity's own start-up "
                    "allocations are reported as leaks")
    root = tempfile.mkdtemp(prefix="secupload-modsec-")
    request.addfinalizer(lambda: shutil.rmtree(root, ignore_errors=True))
    os.chmod(root, 0o755)
    d = {"root": root}
    for k in ("tmp", "data", "audit"):
        d[k] = os.path.join(root, k)
        os.mkdir(d[k])
        os.chmod(d[k], 0o777)   # written by the server's user
    server, upload, files = _shipped_blocks()
    s = Stack("modsec", extra="""
LoadModule unique_id_module %(mods)s/mod_unique_id.so
LoadModule security2_module %(so)s
Include "%(conf)s"
%(server)s
<Location /api/upload/>
%(upload)s
</Location>
<Location /api/files/>
%(files)s
</Location>
<Location /ms-open/>
    SetHandler secupload
    SecUploadEnable upload
</Location>
""" % dict(mods=H.MODULE_DIR, so=MODSEC_SO, conf=_modsec_conf(d, crs),
           server=server, upload=upload, files=files))
    s.modsec = d
    yield from running(request, s)


def _marked(marker, size):
    piece = marker + secrets.token_bytes(4000)
    return (piece * (size // len(piece) + 1))[:size]


def _holding(s, marker):
    """Files under ModSecurity's dirs, the server root, the storage dir and
    the system's temp dirs that hold the marker."""
    where = [s.modsec["root"], s.site.root, "/tmp", "/var/tmp",
             "/var/cache/modsecurity", "/var/log/apache2"]
    where = [w for w in where if os.path.isdir(w)]
    r = subprocess.run(["grep", "-rlF", "--", marker.decode()] + where,
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                       timeout=120)
    return sorted(set(p for p in r.stdout.decode().splitlines() if p))


def _send_all_but_tail(s, path, headers, body, tail=16):
    """Send the body but its last bytes, let the server take it in, then
    call back before finishing: what is on disk while an upload arrives."""
    c = H.RawConn(s.apache.port, timeout=60)
    head = H.request_head("POST", path, headers + [
        ("Content-Length", str(len(body))), ("Connection", "close")])
    c.send(head + body[:-tail])

    def finish():
        c.send(body[-tail:])
        try:
            return c.read_response()
        finally:
            c.close()
    return finish


@pytest.mark.parametrize("size", [2 * MB, 20 * MB], ids=["2MB", "20MB"])
@pytest.mark.parametrize("form", ["raw", "multipart"])
def test_plaintext_never_reaches_modsecurity(ms, size, form):
    marker = b"MARK" + secrets.token_hex(12).encode()
    plain = _marked(marker, size)
    if form == "multipart":
        body, ctype = H.multipart([H.file_part(plain, "m.bin")])
    else:
        body, ctype = plain, "application/octet-stream"
    finish = _send_all_but_tail(ms, "/api/upload/", [("Content-Type", ctype)], body)
    time.sleep(1.0)
    during = _holding(ms, marker)
    resp = finish()
    doc = ms.check_stored(resp, plain)
    assert not during, "plaintext on disk while the upload arrived: %r" % during
    # read back through the files location (ModSecurity's response side)
    r = requests.get(ms.url("/api/files/" + doc["id"]), timeout=120)
    assert r.status_code == 200 and r.content == plain
    assert not _holding(ms, marker), "plaintext left on disk"
    # a refused upload (ModSecurity's audit log records 4xx/5xx answers)
    ms.expect_error(lambda: ms.post(body, {"Content-Type": ctype,
                                           "Content-Digest": "sha-256=:" + "A" * 43 + "=:"}),
                    400, "bad_request")
    assert not _holding(ms, marker), "plaintext of a refused upload on disk"


def test_control_without_the_shipped_settings_spools_plaintext(ms):
    """Where the shipped settings are missing, ModSecurity keeps a large
    body in its SecTmpDir while it arrives: the check above can fail."""
    marker = b"MARK" + secrets.token_hex(12).encode()
    plain = _marked(marker, 2 * MB)
    body, ctype = H.multipart([H.file_part(plain, "m.bin")])
    finish = _send_all_but_tail(ms, "/ms-open/", [("Content-Type", ctype)], body)
    time.sleep(1.0)
    during = _holding(ms, marker)
    finish()
    assert during, "ModSecurity did not spool the body: the control failed"
    assert all(p.startswith(ms.modsec["tmp"]) for p in during), during
