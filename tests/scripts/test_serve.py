"""scripts/serve, run as root from a checkout www-data cannot reach (the
`checkout` fixture): it stores uploads where Apache's children can write
them (by default under /var/lib/secupload-dev, or in SU_STORAGE_DIR, which
it refuses when www-data cannot use it), and every way of stopping it
(SIGTERM, Ctrl-C, a hang-up; to the script alone or to its whole process
group, as `timeout`, systemd and a terminal send them; while it serves or
while it starts) stops Apache and Redis and frees their ports."""

import os
import pwd
import re
import signal
import socket
import stat
import subprocess
import threading
import time

import pytest
import requests

from checkout_util import DEV_STORAGE_ROOT, SERVER_USER

STOP_TIMEOUT = 20.0  # scripts/serve sends KILL after 15 s


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_free(port):
    """Nothing listens on 127.0.0.1:port (bound as servers bind, so that
    connections in TIME_WAIT do not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen(1)
        except OSError:
            return False
        return True


def proc_stat(pid):
    """(state, ppid, pgrp, comm) of pid, or None when it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
    except OSError:
        return None
    comm = st[st.index("(") + 1:st.rindex(")")]
    fields = st[st.rindex(")") + 2:].split()
    return fields[0], int(fields[1]), int(fields[2]), comm


def live_pids(pred):
    """The running (not zombie) processes whose stat satisfies pred."""
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = proc_stat(int(name))
            if st and st[0] != "Z" and pred(st):
                out.append(int(name))
    return sorted(out)


class Serve:
    """scripts/serve of the checkout on free ports, in a session (and so a
    process group) of its own; its output is collected as it comes."""

    def __init__(self, co, mpm, storage=""):
        self.co = co
        self.port, self.redis_port = free_port(), free_port()
        with open(os.path.join(co.path, "env.example")) as f:
            env = f.read()
        for name, value in (("SU_PORT", self.port),
                            ("SU_REDIS_PORT", self.redis_port),
                            ("SU_MPM", mpm), ("SU_STORAGE_DIR", storage),
                            # what the files handler reads (secupload_harness)
                            ("SU_FORMAT_VERSION",
                             os.environ.get("SECUPLOAD_UPLOAD_FORMAT", "1"))):
            env, n = re.subn(r"(?m)^%s=.*$" % name, "%s=%s" % (name, value),
                             env)
            assert n == 1, name
        with open(os.path.join(co.path, ".env"), "w") as f:
            f.write(env)
        self.out = []
        self.proc = subprocess.Popen(
            ["scripts/serve"], cwd=co.path, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.out.append(line.decode(errors="replace"))

    @property
    def text(self):
        return "".join(self.out)

    def wait_until(self, pred, timeout, what):
        deadline = time.monotonic() + timeout
        while not pred():
            assert self.proc.poll() is None or pred(), \
                "scripts/serve exited (%s) before %s:\n%s" % (
                    self.proc.returncode, what, self.text[-3000:])
            assert time.monotonic() < deadline, \
                "no %s within %ds:\n%s" % (what, timeout, self.text[-3000:])
            time.sleep(0.01)

    def wait_serving(self):
        self.wait_until(lambda: "is serving" in self.text, 300, "'is serving'")
        m = re.search(r"(?m)^\s*storage:\s+(\S.*)$", self.text)
        assert m, self.text
        self.storage = m.group(1).strip()
        self.co.storage_dirs.add(self.storage)

    def group(self):
        """Every running process of the script's process group."""
        return live_pids(lambda st: st[2] == self.proc.pid)

    def children(self, comm):
        return live_pids(lambda st: st[1] == self.proc.pid and st[3] == comm)

    def signal(self, sig, whole_group):
        if whole_group:
            os.killpg(self.proc.pid, sig)
        else:
            os.kill(self.proc.pid, sig)

    def assert_all_stopped(self, *expect_rc):
        """The script exits with one of expect_rc; within STOP_TIMEOUT nothing
        of its group runs (Apache, its children, Redis) and both ports are
        free."""
        rc = self.proc.wait(timeout=STOP_TIMEOUT)
        self.reader.join(5)
        deadline = time.monotonic() + STOP_TIMEOUT
        while self.group() and time.monotonic() < deadline:
            time.sleep(0.05)
        left = {p: proc_stat(p) for p in self.group()}
        assert not left, "still running after the script ended: %r" % left
        assert port_free(self.port) and port_free(self.redis_port)
        assert rc in expect_rc, "exit %s:\n%s" % (rc, self.text[-3000:])
        assert self.text.rstrip().endswith("stopped"), self.text[-3000:]

    def kill_leftovers(self):
        """After a failed test: stop what it started, by pid."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        for pid in self.group():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


@pytest.fixture
def serve(checkout):
    started = []

    def start(mpm="event", storage=""):
        s = Serve(checkout, mpm, storage)
        started.append(s)
        return s
    yield start
    for s in started:
        s.kill_leftovers()


def upload_and_read_back(s):
    data = os.urandom(100 * 1024) + b"end"
    base = "http://127.0.0.1:%d" % s.port
    r = requests.post(base + "/api/upload/",
                      files={"file": ("probe.bin", data)}, timeout=30)
    assert r.status_code == 201, (r.status_code, r.text,
                                  s.text[-2000:])
    ident = r.json()["id"]
    r = requests.get(base + "/api/files/" + ident, timeout=30)
    assert r.status_code == 200 and r.content == data
    return ident


def assert_storage_outside(s, ident, parent=DEV_STORAGE_ROOT):
    """The announced storage dir is in parent, outside the checkout:
    www-data's, mode 0700, holding the upload."""
    assert os.path.dirname(s.storage) == parent, s.storage
    assert not s.storage.startswith(s.co.parent + "/")
    st = os.stat(s.storage)
    assert st.st_uid == pwd.getpwnam(SERVER_USER).pw_uid
    assert stat.S_IMODE(st.st_mode) == 0o700
    assert os.path.isfile(os.path.join(s.storage, ident[:2], ident + ".enc"))


SIGNALS = {"TERM": (signal.SIGTERM, 143), "INT": (signal.SIGINT, 130),
           "HUP": (signal.SIGHUP, 129)}


# prefork's parent signals its whole process group (the script's and
# Redis's) when it stops or restarts: after a signal to the whole group, its
# TERM may be the first the script handles
@pytest.mark.parametrize("mpm", ["event", "prefork"])
@pytest.mark.parametrize("sig,whole_group", [
    ("TERM", False), ("TERM", True), ("INT", True), ("HUP", False),
    ("HUP", True)], ids=["TERM-script", "TERM-group", "INT-group",
                         "HUP-script", "HUP-group"])
def test_serves_then_a_signal_stops_apache_and_redis(serve, sig, whole_group,
                                                     mpm):
    s = serve(mpm)
    s.wait_serving()
    assert "(MPM %s)" % mpm in s.text
    ident = upload_and_read_back(s)
    assert_storage_outside(s, ident)
    assert s.children("apache2") and s.children("redis-server")
    sig, rc = SIGNALS[sig]
    s.signal(sig, whole_group)
    if mpm == "prefork" and whole_group:
        s.assert_all_stopped(rc, 143)
    else:
        s.assert_all_stopped(rc)


@pytest.mark.parametrize("mpm", ["event", "prefork"])
@pytest.mark.parametrize("whole_group", [False, True],
                         ids=["script", "group"])
def test_sigterm_during_startup_stops_apache_and_redis(serve, whole_group,
                                                       mpm):
    s = serve(mpm)
    # signal as soon as Apache runs, before it serves
    s.wait_until(lambda: s.children("apache2"), 300, "Apache started")
    assert "is serving" not in s.text
    assert s.children("redis-server")
    s.signal(signal.SIGTERM, whole_group)
    s.assert_all_stopped(143)
    assert "is serving" not in s.text
    assert "did not start" not in s.text, s.text[-3000:]


def test_storage_dir_from_env_is_made_for_www_data(serve, open_dir):
    s = serve(storage=os.path.join(open_dir, "uploads"))
    s.wait_serving()
    assert s.storage == os.path.join(open_dir, "uploads")
    ident = upload_and_read_back(s)
    assert_storage_outside(s, ident, open_dir)
    s.signal(signal.SIGTERM, False)
    s.assert_all_stopped(143)


def test_storage_dir_www_data_cannot_reach_is_refused(serve):
    """SU_STORAGE_DIR in the checkout: refused before anything starts."""
    s = serve(storage="var/in-checkout")
    assert s.proc.wait(timeout=300) == 1
    s.reader.join(5)
    want = os.path.join(s.co.path, "var", "in-checkout")
    assert "cannot write to the storage dir %s" % want in s.text, s.text
    assert "is serving" not in s.text and not s.group()
    assert port_free(s.port) and port_free(s.redis_port)
    assert not os.path.exists(want)
