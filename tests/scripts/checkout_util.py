"""A private checkout for the tests of the project's scripts: a copy of this
checkout's tracked files, built, in a directory of mode 0700 owned by root, as
a clone in root's home is. Apache's and gunicorn's workers run as www-data,
which cannot reach anything in it."""

import os
import pwd
import shutil
import subprocess
import tempfile

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SERVER_USER = "www-data"
DEV_STORAGE_ROOT = "/var/lib/secupload-dev"


def as_server_user(argv, timeout=60):
    """Run argv as the server's user; the CompletedProcess (text)."""
    return subprocess.run(["runuser", "-u", SERVER_USER, "--"] + argv,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          stdin=subprocess.DEVNULL, text=True, timeout=timeout)


def _tracked_files():
    p = subprocess.run(["git", "-C", REPO, "ls-files", "-z"],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    if p.returncode != 0:
        pytest.skip("not a git checkout: cannot tell its tracked files")
    return [f for f in p.stdout.decode().split("\0") if f]


def _copy_tracked(dst):
    for rel in _tracked_files():
        src = os.path.join(REPO, rel)
        if not os.path.lexists(src):
            continue  # deleted in the work tree
        os.makedirs(os.path.dirname(os.path.join(dst, rel)), exist_ok=True)
        shutil.copy2(src, os.path.join(dst, rel), follow_symlinks=False)


class Checkout:
    def __init__(self):
        self.parent = tempfile.mkdtemp(prefix="secupload-checkout-")
        os.chmod(self.parent, 0o700)
        self.path = os.path.join(self.parent, "mod_secupload")
        self.storage_dirs = set()  # the storage dirs scripts/serve announced

    def make(self):
        """Copy the tracked files, check www-data cannot read them, build."""
        _copy_tracked(self.path)
        r = as_server_user(["test", "-r",
                            os.path.join(self.path, "env.example")])
        assert r.returncode != 0, "%s can read the checkout" % SERVER_USER
        p = subprocess.run(["scripts/build.sh"], cwd=self.path,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL, timeout=1800)
        assert p.returncode == 0, p.stdout.decode(errors="replace")[-3000:]

    def cleanup(self):
        shutil.rmtree(self.parent, ignore_errors=True)
        for d in self.storage_dirs:
            if os.path.dirname(d) == DEV_STORAGE_ROOT:
                shutil.rmtree(d, ignore_errors=True)
        try:
            os.rmdir(DEV_STORAGE_ROOT)  # only when no other checkout uses it
        except OSError:
            pass


def need_root_and_server_user():
    if os.geteuid() != 0:
        pytest.skip("needs root: Apache then runs its children as %s, which "
                    "cannot reach a checkout in a 0700 directory"
                    % SERVER_USER)
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        pytest.skip("no user %s" % SERVER_USER)
