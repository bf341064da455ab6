"""The pieces of scripts/test whose servers run as www-data read nothing in
the checkout, which www-data may not reach (the `checkout` fixture: a copy
in a 0700 directory owned by root): the integration harness hands
LeakSanitizer (in Apache's children) a suppression file of its own, and
bench/run starts the Django peer's gunicorn workers on a copy of the app."""

import os
import subprocess

import pytest

from checkout_util import SERVER_USER, as_server_user

PYTHON = "/usr/bin/python3"


def run_in(co, code, *args, timeout=120):
    p = subprocess.run([PYTHON, "-c", code] + list(args), cwd=co.path,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       stdin=subprocess.DEVNULL, text=True, timeout=timeout)
    assert p.returncode == 0, p.stdout[-3000:]
    return p.stdout


# A program that leaks as Apache's children do (lsan.supp names the
# function), run as the server's user with the sanitizer options the harness
# gives Apache; LeakSanitizer dies when it cannot read the suppressions.
LEAKER = r"""
#include <stdlib.h>
void *volatile keep;
__attribute__((noinline)) void *ap_thread_current_create(void)
{ return malloc(24); }
int main(void) { keep = ap_thread_current_create(); keep = 0; return 0; }
"""

LSAN_CHECK = r"""
import os, subprocess, sys
sys.path.insert(0, "tests/integration")
os.environ["SECUPLOAD_LD_PRELOAD"] = "libasan.so"
import secupload_harness as H
env = H.server_env()
opts = ["%%s=%%s" %% (k, env[k]) for k in ("ASAN_OPTIONS", "LSAN_OPTIONS")]
p = subprocess.run(["runuser", "-u", "%s", "--", "env"] + opts + [sys.argv[1]],
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
print("rc", p.returncode)
print(p.stdout)
""" % SERVER_USER


def test_lsan_suppressions_reach_the_server_user(checkout, open_dir):
    supp = os.path.join(checkout.path, "tests", "integration", "lsan.supp")
    assert as_server_user(["cat", supp]).returncode != 0
    src, exe = os.path.join(open_dir, "leaker.c"), os.path.join(open_dir, "leaker")
    with open(src, "w") as f:
        f.write(LEAKER)
    p = subprocess.run(["gcc", "-g", "-O0", "-fsanitize=address", src,
                        "-o", exe], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=120)
    if p.returncode != 0:
        pytest.skip("gcc cannot build with AddressSanitizer: " + p.stdout)
    os.chmod(exe, 0o755)
    out = run_in(checkout, LSAN_CHECK, exe)
    # the leak is suppressed: the file was read, as the server's user
    assert out.startswith("rc 0\n") and "Sanitizer" not in out, out


DJANGO_CHECK = r"""
import argparse, os, sys
sys.path.insert(0, "bench")
import bench
st = bench.Setup(argparse.Namespace(workdir=None, keep=False))
try:
    st.django = st.start_django()
    path = st.path("probe.bin")
    sha = bench.make_file(path, 300 * 1024)
    bench.upload(st, bench.DJANGO, path, 300 * 1024, sha, 60, "probe")
    stored = os.listdir(st.django["storage"])
    print("stored", len(stored))
finally:
    st.cleanup()
    st.remove_work()
"""


def test_bench_django_peer_serves_from_the_checkout(checkout):
    need = subprocess.run([PYTHON, "-c", "import django, gunicorn"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if need.returncode != 0:
        pytest.skip("gunicorn and Django are not installed (bench/run "
                    "installs them)")
    app = os.path.join(checkout.path, "bench", "peers", "django_app",
                       "benchapp", "views.py")
    assert as_server_user(["cat", app]).returncode != 0
    out = run_in(checkout, DJANGO_CHECK)
    assert "stored 1" in out, out
