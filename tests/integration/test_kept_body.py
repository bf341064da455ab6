"""Next to mod_request's KeptBodySize, which keeps a copy of the request
body for other modules (its buckets share memory with the ones the module
reads). The module wipes the body buckets it alone holds once it has taken
their bytes; it must not zero the copy that mod_request keeps. A probe
module (tests/integration/probes/mod_kept_probe.c, built here with apxs)
logs the MD5 of the kept body at the end of each request."""

import hashlib
import os
import secrets
import shutil
import subprocess
import tempfile

import pytest

import secupload_harness as H
from secupload_stack import Stack, running

PROBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "probes",
                     "mod_kept_probe.c")


def _build_probe(workdir):
    shutil.copy(PROBE, workdir)
    r = subprocess.run(["apxs", "-c", "-o", "mod_kept_probe.la",
                        "mod_kept_probe.c"], cwd=workdir, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=120)
    assert r.returncode == 0, r.stdout.decode()
    return os.path.join(workdir, ".libs", "mod_kept_probe.so")


@pytest.fixture(scope="module")
def kept(module_so, request):
    probe_dir = tempfile.mkdtemp(prefix="secupload-probe-")
    request.addfinalizer(lambda: shutil.rmtree(probe_dir, ignore_errors=True))
    os.chmod(probe_dir, 0o755)
    so = _build_probe(probe_dir)
    log = os.path.join(probe_dir, "kept.log")
    s = Stack("kept", extra="""
LoadModule request_module %s/mod_request.so
LoadModule kept_probe_module "%s"
CustomLog "%s" "%%{kept_md5}n %%>s %%L"
<Location /kept/>
    SetHandler secupload
    SecUploadEnable upload
    KeptBodySize 1048576
</Location>
""" % (H.MODULE_DIR, so, log))
    s.kept_log = log
    yield from running(request, s)


def _kept_md5(s, request_id):
    """The probe's line of the request with that log id: written once its
    answer has gone, so possibly after the lines of later requests."""
    def line():
        with open(s.kept_log) as f:
            found = [ln.split() for ln in f.read().splitlines()
                     if ln.endswith(" " + request_id)]
        return found[-1] if found else None
    return H._wait_for(line, 5.0)


@pytest.mark.parametrize("multipart", [False, True], ids=["raw", "multipart"])
def test_kept_body_is_not_zeroed(kept, multipart):
    data = secrets.token_bytes(300 * 1024)
    if multipart:
        r, body = kept.post_multipart([H.file_part(data, "k.bin")], path="/kept/")
    else:
        body = data
        r = kept.post(data, {"Content-Type": "application/octet-stream"},
                      path="/kept/")
    doc = kept.check_stored(r, data)
    md5, status, _ = _kept_md5(kept, kept.rv.meta(doc["id"])["request_id"])
    assert status == "201"
    assert md5 == hashlib.md5(body).hexdigest(), \
        "mod_request's kept copy of the body was changed"


def test_body_over_kept_body_size_is_json_413(kept):
    """mod_request refuses a body over KeptBodySize itself; the answer is
    still the module's JSON, and nothing is kept."""
    data = secrets.token_bytes(2 << 20)
    kept.expect_error(lambda: kept.post(
        data, {"Content-Type": "application/octet-stream"}, path="/kept/"),
        413, "too_large")
