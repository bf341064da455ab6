"""A real browser on the example page (conf/examples/upload/index.html):
Debian's Chromium, driven by playwright-core (browser_test.js), uploads a
file through the page's file chooser, sees its id and the JSON answer,
downloads it back by the page's link, byte for byte; the same page served
from another origin that SecUploadCorsOrigins allows uploads to the module
(a preflight, then the POST) and reads the file back with fetch; from an
origin not allowed it cannot, and nothing is stored. Screenshots are kept
in $SECUPLOAD_ARTIFACTS (default: a new temporary directory).

Needs /usr/bin/chromium and `npm ci` run here (scripts/test does both)."""

import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import secupload_harness as H  # noqa: E402
from secupload_stack import Stack, running  # noqa: E402

PAGE_DIR = os.path.join(ROOT, "conf", "examples", "upload")
CHROMIUM = os.environ.get("SECUPLOAD_CHROMIUM", "/usr/bin/chromium")


def _need(what, ok):
    if not ok:
        if os.environ.get("CI"):
            pytest.fail("%s is missing (scripts/deps.sh test, npm ci in "
                        "tests/browser)" % what, pytrace=False)
        pytest.skip("%s is missing: the browser test is skipped" % what)


@pytest.fixture(scope="module")
def cross_servers():
    """Two plain servers of the page on other loopback ports: other origins."""
    servers = []
    handler = functools.partial(_QuietHandler, directory=PAGE_DIR)
    for _ in range(2):
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
    yield ["http://127.0.0.1:%d" % s.server_address[1] for s in servers]
    for srv in servers:
        srv.shutdown()
        srv.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _stack_conf(pages, allowed):
    """The page aliased as secupload-example.conf does, and CORS for it."""
    mods = "\n".join("LoadModule %s_module %s/mod_%s.so" % (m, H.MODULE_DIR, m)
                     for m in ("alias", "mime", "dir"))
    return """
%s
TypesConfig /etc/mime.types
DirectoryIndex index.html
Alias /secupload-example/ "%s/"
<Directory "%s">
    Require all granted
</Directory>
<Location /api/upload/>
    SecUploadCorsOrigins %s
</Location>
<Location /api/files/>
    SecUploadCorsOrigins %s
</Location>
""" % (mods, pages, pages, allowed, allowed)


@pytest.fixture(scope="module")
def bstack(request, cross_servers):
    _need("Chromium (%s)" % CHROMIUM, os.access(CHROMIUM, os.X_OK))
    _need("playwright-core (npm ci in tests/browser)", os.path.isdir(
        os.path.join(HERE, "node_modules", "playwright-core")))
    _need("node", shutil.which("node"))
    path = H.module_path()
    assert os.path.exists(path), "the module is not built: %s" % path
    # a copy the server's User can read, wherever the checkout is
    pages = tempfile.mkdtemp(prefix="secupload-page-")
    os.chmod(pages, 0o755)
    shutil.copy(os.path.join(PAGE_DIR, "index.html"), pages)
    os.chmod(os.path.join(pages, "index.html"), 0o644)
    s = Stack("browser", extra=_stack_conf(pages, cross_servers[0]))
    s.on_stop.append(lambda: shutil.rmtree(pages, ignore_errors=True))
    yield from running(request, s)


def test_example_page_in_chromium(bstack, cross_servers, tmp_path):
    shots = os.environ.get("SECUPLOAD_ARTIFACTS") or tempfile.mkdtemp(
        prefix="secupload-browser-")
    os.makedirs(shots, exist_ok=True)
    data = "a file from the browser test: r\u00e9sum\u00e9\n" * 200
    upload = tmp_path / "r\u00e9sum\u00e9 1.txt"
    upload.write_text(data, encoding="utf-8")
    api = bstack.url("/api/upload/")
    files_before = bstack.files()
    env = dict(os.environ, SU_FILE=str(upload), SU_SHOTS=shots,
               SU_CHROMIUM=CHROMIUM,
               SU_PAGE=bstack.url("/secupload-example/"),
               SU_CROSS="%s/index.html?endpoint=%s" % (cross_servers[0], api),
               SU_DENIED="%s/index.html?endpoint=%s" % (cross_servers[1], api))
    r = subprocess.run(["node", os.path.join(HERE, "browser_test.js")],
                       env=env, cwd=HERE, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=110)
    print("browser screenshots in %s" % shots)
    assert r.returncode == 0, r.stdout[-4000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    # both uploads are stored as they were sent, under their names
    for which in ("same", "cross"):
        meta = bstack.rv.meta(out[which]["id"])
        assert meta["name"] == upload.name, meta
        assert int(meta["size"]) == len(data.encode()), meta
    assert out["same"]["downloaded_as"] == upload.name
    # two files, not three: the origin not allowed stored nothing
    assert len(bstack.files()) == len(files_before) + 2
    assert os.path.getsize(out["shot"]) > 0
    print("screenshots: %s, %s" % (out["shot"], out["cross_shot"]))
    problems = bstack.apache.take_problems()
    assert not problems, problems
