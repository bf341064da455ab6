"""Harness for the mod_secupload integration tests.

Starts a real Apache (Debian's /usr/sbin/apache2) loading the built module and
a real redis-server, each on a free loopback port with a private temporary
directory, and stops them again by the process id it started. Also holds the
independent checks of the product contract: a decryptor for the on-disk
format written from docs/format.md, the "nothing kept" checks and a small raw
HTTP/1.1 client for what `requests` cannot do (100-continue, hang-ups,
hand-made chunking).

Environment:
  SECUPLOAD_MODULE      path of mod_secupload.so (default <repo>/.libs/...)
  SECUPLOAD_MPM         event (default) | prefork | worker
  SECUPLOAD_UPLOAD_FORMAT  1 (default) | 2: SecUploadFormatVersion of the
                        test servers that do not choose one (the files
                        handler serves version 2 once it reads it)
  SECUPLOAD_LD_PRELOAD  put into Apache's environment as LD_PRELOAD
  SECUPLOAD_APACHE      the httpd binary (default /usr/sbin/apache2)
  SECUPLOAD_KEEP_TMP    1: keep the temporary server roots for inspection
  SECUPLOAD_VALGRIND    1: run each Apache as one process (-X) under
                        valgrind memcheck, logging to
                        SECUPLOAD_VALGRIND_LOGDIR/vg-<pid>.log, with
                        SECUPLOAD_VALGRIND_SUPP as suppressions (tests/valgrind)
"""

import atexit
import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import redis

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
APACHE_BIN = os.environ.get("SECUPLOAD_APACHE", "/usr/sbin/apache2")
MODULE_DIR = "/usr/lib/apache2/modules"
REDIS_BIN = "redis-server"
SERVER_USER = "www-data"

MAGIC = b"SECUPLD\x01"
HEADER_LEN = 104
TAG_LEN = 32
# format version 2 (docs/format.md): header, then segments
MAGIC2 = b"SECUPLD\x02"
HEADER2_LEN = 140
SEG_OVERHEAD = 16 + TAG_LEN   # IV and tag of every segment
ID_RE = re.compile(r"^[0-9a-f]{32}$")
STORED_RE = re.compile(r"^[0-9a-f]{32}\.enc$")
RFC3339_UTC_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")

# Every Apache this process started, so the per-test log check covers them all.
ALL_APACHES = []

# Error log lines that must never appear (level is the part after ':' in
# "[module:level]" of our ErrorLogFormat).
BAD_LEVEL_RE = re.compile(r"\[[^\]\s]*:(crit|alert|emerg)\]")
BAD_TEXT = ("AddressSanitizer", "runtime error:", "LeakSanitizer",
            "exit signal", "MemorySanitizer", "ThreadSanitizer")


def h2_supported():
    """mod_http2 refuses to support mpm_prefork (AH10034): its children
    then fail HTTP/2 streams and crash on the way out, with or without this
    module, so HTTP/2 is served and tested under the threaded MPMs only."""
    return mpm() != "prefork"


def need_h2():
    """Skip a test that speaks HTTP/2 where it cannot be served or sent."""
    import pytest
    if not h2_supported():
        pytest.skip("mod_http2 does not support mpm_prefork (AH10034)")
    p = subprocess.run(["curl", "-V"], stdout=subprocess.PIPE, timeout=10)
    if b"HTTP2" not in p.stdout:
        pytest.skip("this curl was built without HTTP/2 support")


def module_path():
    return os.environ.get("SECUPLOAD_MODULE") or os.path.join(
        REPO, ".libs", "mod_secupload.so")


def mpm():
    name = os.environ.get("SECUPLOAD_MPM", "event") or "event"
    if name not in ("event", "prefork", "worker"):
        raise ValueError("SECUPLOAD_MPM must be event, prefork or worker")
    return name


def upload_format():
    """The format the test servers write unless a test chooses one:
    SECUPLOAD_UPLOAD_FORMAT (1 or 2), or 0 when unset: no directive, so
    the module's default (2) is what is tested."""
    v = os.environ.get("SECUPLOAD_UPLOAD_FORMAT", "")
    if v not in ("", "1", "2"):
        raise ValueError("SECUPLOAD_UPLOAD_FORMAT must be 1 or 2")
    return int(v or 0)


def is_root():
    return os.geteuid() == 0


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def server_env():
    """Environment of the server processes: ours plus the sanitizer runtime."""
    env = dict(os.environ)
    pre = os.environ.get("SECUPLOAD_LD_PRELOAD")
    if pre:
        env["LD_PRELOAD"] = pre
        # full malloc stacks, so that the suppression of Apache's own leak
        # (lsan.supp) matches it and nothing else
        env["ASAN_OPTIONS"] = _add_opts(env.get("ASAN_OPTIONS", ""), [
            ("fast_unwind_on_malloc", "0")])
        # read by LeakSanitizer in the children, as the server's user
        env["LSAN_OPTIONS"] = _add_opts(env.get("LSAN_OPTIONS", ""), [
            ("suppressions", server_file(LSAN_SUPP)),
            ("print_suppressions", "0")])
    return env


LSAN_SUPP = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                         "lsan.supp")

_server_files = {}   # a path in the checkout -> its copy
_server_files_dir = None


def server_file(path):
    """A copy of `path` that the server's user can read, in a directory of
    this process's own (removed at exit). The checkout itself may be out of
    that user's reach (a clone in root's home, mode 0700), and Apache's
    children read some files only once they run as that user."""
    global _server_files_dir
    if path in _server_files:
        return _server_files[path]
    if _server_files_dir is None:
        _server_files_dir = tempfile.mkdtemp(prefix="secupload-server-files-")
        os.chmod(_server_files_dir, 0o755)
        atexit.register(shutil.rmtree, _server_files_dir, True)
    copy = os.path.join(_server_files_dir, "%d-%s" % (
        len(_server_files), os.path.basename(path)))
    shutil.copyfile(path, copy)
    os.chmod(copy, 0o644)
    _server_files[path] = copy
    return copy


def _add_opts(opts, pairs):
    """Add sanitizer options the caller has not set already."""
    have = {kv.split("=", 1)[0] for kv in re.split(r"[:\s]+", opts) if kv}
    extra = ["%s=%s" % (k, v) for k, v in pairs if k not in have]
    return ":".join([o for o in [opts.strip(":")] if o] + extra)


def startup_timeout():
    # sanitizer builds start (and stop) noticeably slower; valgrind more so
    if os.environ.get("SECUPLOAD_VALGRIND") == "1":
        return 180.0
    return 60.0 if os.environ.get("SECUPLOAD_LD_PRELOAD") else 20.0


def valgrind_argv():
    """The valgrind prefix of Apache's command line, or [] unless
    SECUPLOAD_VALGRIND=1."""
    if os.environ.get("SECUPLOAD_VALGRIND") != "1":
        return []
    logdir = os.environ.get("SECUPLOAD_VALGRIND_LOGDIR") or \
        "/tmp/secupload-valgrind"
    os.makedirs(logdir, exist_ok=True)
    argv = ["valgrind", "--tool=memcheck", "--leak-check=full",
            "--errors-for-leak-kinds=definite", "--error-exitcode=99",
            "--num-callers=40", "--vgdb=no",
            # name the module's frames even after Apache unloaded it at exit
            "--keep-debuginfo=yes",
            "--log-file=%s/vg-%%p.log" % logdir]
    supp = os.environ.get("SECUPLOAD_VALGRIND_SUPP")
    if supp:
        argv.append("--suppressions=" + supp)
    return argv


def _chown_server_user(path):
    if is_root():
        import pwd
        pw = pwd.getpwnam(SERVER_USER)
        os.chown(path, pw.pw_uid, pw.pw_gid)


def server_uid():
    if is_root():
        import pwd
        return pwd.getpwnam(SERVER_USER).pw_uid
    return os.geteuid()


def _wait_for(pred, timeout, interval=0.05):
    """Poll pred() until true or timeout; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


# bound of a graceful stop of a test server (GracefulShutdownTimeout)
GRACEFUL_STOP_S = 5


def _stop_pid(proc, timeout):
    """SIGTERM our own child by pid, wait; SIGKILL that pid if it hangs."""
    if proc.poll() is not None:
        return proc.returncode
    os.kill(proc.pid, signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        return proc.wait(timeout=10)


def child_pids(ppid):
    """The pids whose parent is ppid (from /proc), sorted."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                stat = f.read()
        except OSError:
            continue
        # the command name may hold spaces: fields after the last ')'
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 1 and fields[1] == str(ppid):
            out.append(int(name))
    return sorted(out)


# --------------------------------------------------------------------------
# Redis


class RedisServer:
    """A redis-server of the test's own on 127.0.0.1. extra_args come after
    the defaults and so override them (e.g. --appendonly yes)."""

    def __init__(self, workdir, port=None, password=None, extra_args=(),
                 start_timeout=10.0):
        self.workdir = workdir
        self.port = port or free_port()
        self.password = password
        self.extra_args = list(extra_args)
        self.start_timeout = start_timeout
        self.proc = None
        self.logpath = os.path.join(workdir, "redis-%d.log" % self.port)

    def start(self):
        argv = [REDIS_BIN, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--daemonize", "no",
                "--dir", self.workdir] + self.extra_args
        if self.password:
            argv += ["--requirepass", self.password]
        log = open(self.logpath, "ab")
        try:
            self.proc = subprocess.Popen(argv, stdout=log,
                                         stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        finally:
            log.close()
        ok = _wait_for(self._ping, self.start_timeout)
        if not ok:
            self.stop()
            raise RuntimeError("redis-server did not come up on port %d: %s"
                               % (self.port, self._log_tail()))
        return self

    def _ping(self):
        if self.proc.poll() is not None:
            return False
        try:
            return self.client().ping()
        except redis.RedisError:
            return False

    def _log_tail(self):
        try:
            with open(self.logpath, "rb") as f:
                return f.read()[-2000:].decode("utf-8", "replace")
        except OSError:
            return ""

    def client(self, db=0):
        return redis.Redis(host="127.0.0.1", port=self.port, db=db,
                           password=self.password, decode_responses=True,
                           socket_timeout=5, socket_connect_timeout=5)

    def stop(self):
        if self.proc is not None:
            _stop_pid(self.proc, 10)
            self.proc = None

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None


class SentinelServer:
    """A redis-sentinel of the test's own on 127.0.0.1 watching `master`
    (name sumaster) at master_port, with short timeouts so that a failover
    takes seconds. Its config file is its own (Sentinel rewrites it)."""

    def __init__(self, workdir, master_port, quorum=2, name="sumaster",
                 down_after_ms=1000, failover_timeout_ms=3000):
        self.port = free_port()
        self.name = name
        self.proc = None
        self.confpath = os.path.join(workdir, "sentinel-%d.conf" % self.port)
        self.logpath = os.path.join(workdir, "sentinel-%d.log" % self.port)
        with open(self.confpath, "w") as f:
            f.write("port %d\nbind 127.0.0.1\ndaemonize no\ndir %s\n"
                    "sentinel monitor %s 127.0.0.1 %d %d\n"
                    "sentinel down-after-milliseconds %s %d\n"
                    "sentinel failover-timeout %s %d\n"
                    "sentinel parallel-syncs %s 1\n"
                    % (self.port, workdir, name, master_port, quorum,
                       name, down_after_ms, name, failover_timeout_ms, name))

    def start(self):
        binary = shutil.which("redis-sentinel")
        argv = [binary, self.confpath] if binary else \
            [REDIS_BIN, self.confpath, "--sentinel"]
        log = open(self.logpath, "ab")
        try:
            self.proc = subprocess.Popen(argv, stdout=log,
                                         stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        finally:
            log.close()
        if not _wait_for(self._ping, 10.0):
            self.stop()
            raise RuntimeError("redis-sentinel did not come up on %d"
                               % self.port)
        return self

    def client(self):
        return redis.Redis(host="127.0.0.1", port=self.port,
                           decode_responses=True, socket_timeout=5,
                           socket_connect_timeout=5)

    def _ping(self):
        if self.proc.poll() is not None:
            return False
        try:
            return self.client().ping()
        except redis.RedisError:
            return False

    def master_port(self):
        """The port this sentinel names for the master, or None."""
        try:
            addr = self.client().execute_command(
                "SENTINEL", "get-master-addr-by-name", self.name)
        except redis.RedisError:
            return None
        return int(addr[1]) if addr else None

    def knows(self):
        """(other sentinels, replicas) this sentinel has found."""
        c = self.client()
        return (len(c.execute_command("SENTINEL", "sentinels", self.name)),
                len(c.execute_command("SENTINEL", "replicas", self.name)))

    def stop(self):
        if self.proc is not None:
            _stop_pid(self.proc, 10)
            self.proc = None


# --------------------------------------------------------------------------
# Apache


class Site:
    """A private server root: htdocs, storage dir, key files, logs, config."""

    def __init__(self, tag):
        self.root = tempfile.mkdtemp(prefix="secupload-%s-" % tag)
        # the server's user must be able to traverse to its storage dir
        os.chmod(self.root, 0o755)
        self.htdocs = self._mkdir("htdocs", 0o755)
        self.storage = self._mkdir("storage", 0o700)
        _chown_server_user(self.storage)
        self.run = self._mkdir("run", 0o755)
        self.logs = self._mkdir("logs", 0o755)
        self.keydir = self._mkdir("keys", 0o755)
        self.port = free_port()
        with open(os.path.join(self.htdocs, "hello.txt"), "w") as f:
            f.write("hello from the harness\n")
        self.keys = {}

    def _mkdir(self, name, mode):
        path = os.path.join(self.root, name)
        os.mkdir(path)
        os.chmod(path, mode)
        return path

    def make_key(self, name, content=None, mode=0o400):
        """Write a key file; returns (path, 32-byte key or None)."""
        path = os.path.join(self.keydir, name)
        kek = None
        if content is None:
            kek = secrets.token_bytes(32)
            content = kek.hex() + "\n"
        if os.path.exists(path):
            os.chmod(path, 0o600)
            os.unlink(path)
        with open(path, "w") as f:
            f.write(content)
        os.chmod(path, mode)
        if kek is not None:
            self.keys[path] = kek
        return path, kek

    def write_htpasswd(self, users):
        """users: {name: password}; {SHA} hashes, which APR verifies anywhere."""
        path = os.path.join(self.root, "htpasswd")
        with open(path, "w") as f:
            for user, pw in users.items():
                digest = base64.b64encode(
                    hashlib.sha1(pw.encode()).digest()).decode()
                f.write("%s:{SHA}%s\n" % (user, digest))
        os.chmod(path, 0o644)
        return path

    def conf_text(self, body, with_module=True, port=None):
        """A complete, self-contained httpd.conf around `body`."""
        m = mpm()
        mods = ["mpm_%s" % m, "authz_core", "authn_core", "authn_file",
                "auth_basic", "authz_user"]
        if h2_supported():
            mods.append("http2")
        lines = [
            'ServerRoot "%s"' % self.root,
            "ServerName 127.0.0.1",
            "Listen 127.0.0.1:%d" % (port or self.port),
            'PidFile "%s/httpd.pid"' % self.run,
            'DefaultRuntimeDir "%s"' % self.run,
            "Mutex file:%s default" % self.run,
            'ErrorLog "%s/error.log"' % self.logs,
            "LogLevel info",
            'ErrorLogFormat "[%{u}t] [%-m:%l] [pid %P:tid %T] [%L] %M"',
            'LogFormat "%h %u %t \\"%r\\" %>s %b %D %L" su',
            'CustomLog "%s/access.log" su' % self.logs,
        ]
        for mod in mods:
            lines.append("LoadModule %s_module %s/mod_%s.so"
                         % (mod, MODULE_DIR, mod))
        if with_module:
            lines.append('LoadModule secupload_module "%s"' % module_path())
        if is_root():
            lines += ["User %s" % SERVER_USER, "Group %s" % SERVER_USER]
        if m == "prefork":
            lines += ["StartServers 8", "MinSpareServers 4",
                      "MaxSpareServers 40", "ServerLimit 48",
                      "MaxRequestWorkers 48"]
        else:
            lines += ["StartServers 2", "ServerLimit 4",
                      "ThreadsPerChild 25", "MaxRequestWorkers 100",
                      "MinSpareThreads 25", "MaxSpareThreads 100"]
        lines += [
            "MaxConnectionsPerChild 0",
            "GracefulShutdownTimeout %d" % GRACEFUL_STOP_S,
            "Timeout 60",
            "KeepAlive On",
            "Protocols %s" % ("h2c http/1.1" if h2_supported() else "http/1.1"),
            'DocumentRoot "%s"' % self.htdocs,
            "<Location />",
            "    Require all granted",
            "</Location>",
        ]
        return "\n".join(lines) + "\n" + body + "\n"

    def write_conf(self, text, name="httpd.conf"):
        path = os.path.join(self.root, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def cleanup(self):
        if os.environ.get("SECUPLOAD_KEEP_TMP") == "1":
            return
        shutil.rmtree(self.root, ignore_errors=True)


def config_test(conf_path, timeout=60):
    """`apache2 -t -f conf`: (exit code, stdout+stderr)."""
    p = subprocess.run([APACHE_BIN, "-t", "-f", conf_path], env=server_env(),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       stdin=subprocess.DEVNULL, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace")


class Apache:
    """One httpd in the foreground as our child process."""

    def __init__(self, site, conf_path, port=None):
        self.site = site
        self.conf_path = conf_path
        self.port = port or site.port
        self.proc = None
        self.errlog = os.path.join(site.logs, "error.log")
        self.outlog = os.path.join(site.logs, "apache-stdout-%d.log"
                                   % len(ALL_APACHES))
        self._checked = {self.errlog: 0, self.outlog: 0}
        self.stopped_rc = None
        ALL_APACHES.append(self)

    @property
    def base(self):
        return "http://127.0.0.1:%d" % self.port

    def url(self, path):
        return self.base + path

    def launch(self):
        """Start the process without waiting for it to serve."""
        out = open(self.outlog, "ab")
        try:
            vg = valgrind_argv()
            self.proc = subprocess.Popen(
                vg + [APACHE_BIN, "-f", self.conf_path, "-DFOREGROUND"]
                + (["-X"] if vg else []),
                env=server_env(), stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, cwd=self.site.root,
                # prefork signals its whole process group on shutdown: give
                # it one of its own so that it never reaches the test runner
                start_new_session=True)
        finally:
            out.close()
        return self

    def start(self):
        self.launch()
        ok = _wait_for(self._serving, startup_timeout(), 0.1)
        # _serving stops waiting when the server exits (a refused
        # configuration): that is a failed start, not a running server
        if not ok or self.proc.poll() is not None:
            rc = self.proc.poll()
            self.stop()
            raise RuntimeError(
                "Apache did not start (exit %r).\n--- output:\n%s\n"
                "--- error log:\n%s" % (rc, self.read(self.outlog)[-4000:],
                                        self.read(self.errlog)[-4000:]))
        return self

    def _serving(self):
        if self.proc.poll() is not None:
            return True  # stop waiting; start() reports it
        try:
            with socket.create_connection(("127.0.0.1", self.port), 1) as s:
                s.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          b"Connection: close\r\n\r\n")
                s.settimeout(5)
                data = s.recv(64)
                return data.startswith(b"HTTP/1.1 200")
        except OSError:
            return False

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, graceful=True):
        """Stop by pid: first a graceful stop (SIGWINCH, bounded by
        GracefulShutdownTimeout), then SIGTERM; graceful=False for SIGTERM
        at once. Graceful by default: mpm_event's hard stop was seen to crash
        a child now and then in the MPM's own exit path (docs/reliability.md,
        Known gaps); the tests of hard stops ask for one."""
        if self.proc is not None:
            if graceful and self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGWINCH)
                try:
                    self.proc.wait(timeout=GRACEFUL_STOP_S + 10)
                except subprocess.TimeoutExpired:
                    pass
            self.stopped_rc = _stop_pid(self.proc, startup_timeout())
            self.proc = None
        return self.stopped_rc

    @staticmethod
    def read(path, offset=0):
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_text(self):
        return self.read(self.errlog)

    def take_problems(self):
        """Bad lines logged since the last call (error log and console)."""
        problems = []
        for path in (self.errlog, self.outlog):
            start = self._checked.get(path, 0)
            text = self.read(path, start)
            self._checked[path] = start + len(text.encode("utf-8", "replace"))
            frames = 0
            for line in text.splitlines():
                if BAD_LEVEL_RE.search(line) or any(t in line
                                                    for t in BAD_TEXT):
                    problems.append("%s: %s" % (os.path.basename(path), line))
                    frames = 12   # the first frames of a sanitizer's report
                elif frames and line.lstrip().startswith("#"):
                    problems.append("%s:   %s" % (os.path.basename(path),
                                                  line.strip()))
                    frames -= 1
        return problems


# --------------------------------------------------------------------------
# The on-disk format (docs/format.md), decoded independently of the module


class FormatError(AssertionError):
    pass


def key_id(kek):
    return hashlib.sha256(kek).digest()[:8]


def decrypt_blob(blob, keks, fid=None):
    """Check and decrypt a stored file of either version; returns
    (plaintext, kek used). A version 2 file needs its id (fid)."""
    if blob[:8] == MAGIC2:
        return decrypt_blob2(blob, keks, fid)
    return decrypt_blob1(blob, keks)


def decrypt_file(path, keks):
    """decrypt_blob of a stored file, its id taken from its name."""
    with open(path, "rb") as f:
        blob = f.read()
    return decrypt_blob(blob, keks, os.path.basename(path)[:32])


def _unwrap(blob, keks):
    from cryptography.hazmat.primitives.keywrap import (InvalidUnwrap,
                                                        aes_key_unwrap)
    matching = [k for k in keks if key_id(k) == blob[8:16]]
    if not matching:
        raise FormatError("no KEK has key id %s" % blob[8:16].hex())
    try:
        data_key = aes_key_unwrap(matching[0], blob[16:88])
    except InvalidUnwrap:
        raise FormatError("RFC 3394 unwrap failed")
    if len(data_key) != 64:
        raise FormatError("data key is %d bytes" % len(data_key))
    return data_key, matching[0]


def _seg_tag(mac_key, fid, nonce, index, flag, ivct):
    msg = (b"\x02" + bytes.fromhex(fid) + nonce + index.to_bytes(8, "big")
           + bytes([flag]) + ivct)
    return hmac.new(mac_key, msg, hashlib.sha256).digest()


def v2_geometry(size, segsize):
    """(number of segments, stored length of the last) of a complete version
    2 file of size bytes, from docs/format.md alone."""
    stride = segsize + SEG_OVERHEAD
    body = size - HEADER2_LEN
    if body < SEG_OVERHEAD + 16:
        raise FormatError("file too short: %d bytes" % size)
    k = (body - SEG_OVERHEAD - 16) // stride
    last = body - k * stride
    if last > segsize + 16 + SEG_OVERHEAD or (last - SEG_OVERHEAD) % 16:
        raise FormatError("no file of segment size %d has %d bytes"
                          % (segsize, size))
    return k + 1, last


def v2_file_size(plain_len, segsize):
    """The stored size of a version 2 file of plain_len bytes."""
    full = max((plain_len - 1) // segsize, 0)
    rest = plain_len - full * segsize
    return HEADER2_LEN + full * (segsize + SEG_OVERHEAD) \
        + (rest // 16 + 1) * 16 + SEG_OVERHEAD


def decrypt_blob2(blob, keks, fid):
    """Version 2: header tag, then every segment's tag (MORE for all but the
    last, LAST for it) before its plaintext is taken."""
    from cryptography.hazmat.primitives.ciphers import (Cipher, algorithms,
                                                        modes)
    if fid is None or not ID_RE.match(fid):
        raise FormatError("a version 2 file is read with its id")
    if len(blob) < HEADER2_LEN:
        raise FormatError("file too short: %d bytes" % len(blob))
    data_key, kek = _unwrap(blob, keks)
    enc_key, mac_key = data_key[:32], data_key[32:]
    want = hmac.new(mac_key, b"\x01" + bytes.fromhex(fid) + blob[:108],
                    hashlib.sha256).digest()
    if not hmac.compare_digest(want, blob[108:140]):
        raise FormatError("header tag mismatch")
    segsize = int.from_bytes(blob[88:92], "big")
    nonce = blob[92:108]
    nseg, last = v2_geometry(len(blob), segsize)
    out = []
    for i in range(nseg):
        at = HEADER2_LEN + i * (segsize + SEG_OVERHEAD)
        seg = blob[at:at + (last if i == nseg - 1 else segsize + SEG_OVERHEAD)]
        flag = 1 if i == nseg - 1 else 0
        if not hmac.compare_digest(
                _seg_tag(mac_key, fid, nonce, i, flag, seg[:-TAG_LEN]),
                seg[-TAG_LEN:]):
            raise FormatError("segment %d tag mismatch" % i)
        dec = Cipher(algorithms.AES(enc_key), modes.CBC(seg[:16])).decryptor()
        p = dec.update(seg[16:-TAG_LEN]) + dec.finalize()
        if flag:
            pad = p[-1]
            if not 1 <= pad <= 16 or p[-pad:] != bytes([pad]) * pad:
                raise FormatError("bad PKCS#7 padding")
            p = p[:-pad]
        out.append(p)
    if nseg > 1 and not out[-1]:
        raise FormatError("an empty last segment after a full one")
    return b"".join(out), kek


def encrypt_blob2(plain, kek, fid, segsize=4096, nonce=None):
    """Version 2 built from the spec alone (self-test of decrypt_blob2)."""
    from cryptography.hazmat.primitives.ciphers import (Cipher, algorithms,
                                                        modes)
    from cryptography.hazmat.primitives.keywrap import aes_key_wrap
    data_key = secrets.token_bytes(64)
    nonce = nonce or secrets.token_bytes(16)
    head = MAGIC2 + key_id(kek) + aes_key_wrap(kek, data_key) \
        + segsize.to_bytes(4, "big") + nonce
    head += hmac.new(data_key[32:], b"\x01" + bytes.fromhex(fid) + head,
                     hashlib.sha256).digest()
    pieces = [plain[i:i + segsize] for i in range(0, len(plain), segsize)]
    pieces = pieces or [b""]
    out = [head]
    for i, p in enumerate(pieces):
        flag = 1 if i == len(pieces) - 1 else 0
        if flag:
            pad = 16 - len(p) % 16
            p += bytes([pad]) * pad
        iv = secrets.token_bytes(16)
        enc = Cipher(algorithms.AES(data_key[:32]), modes.CBC(iv)).encryptor()
        ivct = iv + enc.update(p) + enc.finalize()
        out.append(ivct + _seg_tag(data_key[32:], fid, nonce, i, flag, ivct))
    return b"".join(out)


def decrypt_blob1(blob, keks):
    """Version 1: the tag over the whole file, then the plaintext."""
    from cryptography.hazmat.primitives.ciphers import (Cipher, algorithms,
                                                        modes)
    from cryptography.hazmat.primitives.keywrap import (InvalidUnwrap,
                                                        aes_key_unwrap)
    if len(blob) < HEADER_LEN + 16 + TAG_LEN:
        raise FormatError("file too short: %d bytes" % len(blob))
    if blob[:8] != MAGIC:
        raise FormatError("bad magic %r" % blob[:8])
    kid = blob[8:16]
    matching = [k for k in keks if key_id(k) == kid]
    if not matching:
        raise FormatError("no KEK has key id %s" % kid.hex())
    kek = matching[0]
    try:
        data_key = aes_key_unwrap(kek, blob[16:88])
    except InvalidUnwrap:
        raise FormatError("RFC 3394 unwrap failed")
    if len(data_key) != 64:
        raise FormatError("data key is %d bytes" % len(data_key))
    enc_key, mac_key = data_key[:32], data_key[32:]
    body, tag = blob[:-TAG_LEN], blob[-TAG_LEN:]
    want = hmac.new(mac_key, body, hashlib.sha256).digest()
    if not hmac.compare_digest(want, tag):
        raise FormatError("HMAC tag mismatch")
    iv = blob[88:104]
    ct = blob[HEADER_LEN:-TAG_LEN]
    if len(ct) == 0 or len(ct) % 16:
        raise FormatError("ciphertext length %d" % len(ct))
    dec = Cipher(algorithms.AES(enc_key), modes.CBC(iv)).decryptor()
    padded = dec.update(ct) + dec.finalize()
    pad = padded[-1]
    if not 1 <= pad <= 16 or padded[-pad:] != bytes([pad]) * pad:
        raise FormatError("bad PKCS#7 padding")
    return padded[:-pad], kek


def encrypt_blob(plain, kek):
    """The format built from the spec alone (self-test of decrypt_blob)."""
    from cryptography.hazmat.primitives.ciphers import (Cipher, algorithms,
                                                        modes)
    from cryptography.hazmat.primitives.keywrap import aes_key_wrap
    data_key = secrets.token_bytes(64)
    iv = secrets.token_bytes(16)
    pad = 16 - len(plain) % 16
    enc = Cipher(algorithms.AES(data_key[:32]), modes.CBC(iv)).encryptor()
    ct = enc.update(plain + bytes([pad]) * pad) + enc.finalize()
    head = MAGIC + key_id(kek) + aes_key_wrap(kek, data_key) + iv
    body = head + ct
    return body + hmac.new(data_key[32:], body, hashlib.sha256).digest()


# --------------------------------------------------------------------------
# Storage and Redis views


UNSETTLED = ".unsettled"


def unsettled_ids(storage):
    """Ids the module marked for settling (their metadata write's outcome was
    unknown): the marker is about a failed upload, not a kept file."""
    try:
        return sorted(os.listdir(os.path.join(storage, UNSETTLED)))
    except FileNotFoundError:
        return []


def storage_files(storage):
    """Every regular file under storage but the module's settle markers:
    {relative path: size}."""
    out = {}
    for dirpath, dirs, files in os.walk(storage):
        if dirpath == storage and UNSETTLED in dirs:
            dirs.remove(UNSETTLED)
        for fn in files:
            full = os.path.join(dirpath, fn)
            try:
                st = os.lstat(full)
            except FileNotFoundError:
                continue  # a temp file going away while we look
            out[os.path.relpath(full, storage)] = st.st_size
    return out


def stray_files(storage):
    """Files that are not DIR/<id[:2]>/<id>.enc (temp files, junk)."""
    bad = []
    for rel in storage_files(storage):
        parts = rel.split(os.sep)
        if (len(parts) != 2 or not STORED_RE.match(parts[1])
                or parts[1][:2] != parts[0]):
            bad.append(rel)
    return bad


class RedisView:
    def __init__(self, client, prefix):
        self.r = client
        self.prefix = prefix

    @property
    def audit_key(self):
        return self.prefix + "audit"

    def file_keys(self):
        return set(self.r.scan_iter(match=self.prefix + "file:*",
                                    count=1000))

    def meta(self, file_id):
        return self.r.hgetall(self.prefix + "file:" + file_id)

    def audit_mark(self):
        last = self.r.xrevrange(self.audit_key, count=1)
        return last[0][0] if last else "0-0"

    def audit_since(self, mark):
        return [fields for _id, fields in
                self.r.xrange(self.audit_key, min="(" + mark)]

    def audit_all(self):
        return [fields for _id, fields in self.r.xrange(self.audit_key)]


# --------------------------------------------------------------------------
# Request bodies


def multipart(parts, boundary=None, preamble=b"", epilogue=b""):
    """parts: dicts with name, data, and optional filename, content_type,
    headers (list of raw header lines, bytes or str). Returns (body, ctype)."""
    boundary = boundary or ("----suTest" + secrets.token_hex(12))
    b = boundary.encode()
    out = [preamble] if preamble else []
    for i, part in enumerate(parts):
        out.append((b"\r\n" if (i or preamble) else b"") + b"--" + b + b"\r\n")
        disp = 'form-data; name="%s"' % part["name"]
        if part.get("filename") is not None:
            fn = part["filename"]
            fn = fn.encode("utf-8") if isinstance(fn, str) else fn
            disp = disp.encode() + b'; filename="' + fn + b'"'
        else:
            disp = disp.encode()
        out.append(b"Content-Disposition: " + disp + b"\r\n")
        if part.get("content_type"):
            out.append(b"Content-Type: " + part["content_type"].encode()
                       + b"\r\n")
        for h in part.get("headers", ()):
            out.append((h.encode() if isinstance(h, str) else h) + b"\r\n")
        out.append(b"\r\n")
        data = part.get("data", b"")
        out.append(data.encode() if isinstance(data, str) else data)
    out.append(b"\r\n--" + b + b"--\r\n")
    if epilogue:
        out.append(epilogue)
    return b"".join(out), "multipart/form-data; boundary=" + boundary


def file_part(data, filename="upload.bin",
              content_type="application/octet-stream", name="file",
              headers=()):
    return {"name": name, "filename": filename, "data": data,
            "content_type": content_type, "headers": list(headers)}


def field_part(name, value):
    return {"name": name, "data": value}


def sha256_b64(data):
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def content_digest(data):
    return "sha-256=:%s:" % sha256_b64(data)


def chunked(data, sizes):
    """Chunked transfer coding of data with chunk sizes cycling over sizes."""
    out, i, k = [], 0, 0
    while i < len(data):
        n = sizes[k % len(sizes)]
        k += 1
        piece = data[i:i + n]
        i += len(piece)
        out.append(b"%x\r\n" % len(piece) + piece + b"\r\n")
    out.append(b"0\r\n\r\n")
    return b"".join(out)


# --------------------------------------------------------------------------
# A minimal HTTP/1.1 client on a raw socket


class RawResponse:
    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.headers = headers  # lowercase name -> last value
        self.body = body

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "<RawResponse %d %r %r>" % (self.status, self.headers,
                                           self.body[:300])


class RawConn:
    def __init__(self, port, timeout=30):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout)
        self.sock.settimeout(timeout)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def try_send(self, data):
        """Send; False if the server already closed or reset."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def close(self, reset=False):
        if reset:
            import struct
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                 struct.pack("ii", 1, 0))
        self.sock.close()

    def _fill(self):
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            raise EOFError("connection closed")
        self.buf += chunk

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_head(self):
        """Status line and headers of the next response (1xx included)."""
        status_line = self._line().decode("latin-1")
        m = re.match(r"HTTP/1\.[01] (\d{3}) ?(.*)", status_line)
        if not m:
            raise AssertionError("bad status line %r" % status_line)
        headers = {}
        while True:
            line = self._line()
            if not line:
                break
            k, _, v = line.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
        return int(m.group(1)), m.group(2), headers

    def read_response(self, skip_continue=True, head_request=False):
        while True:
            status, reason, headers = self.read_head()
            if status >= 200 or not skip_continue:
                break
        return self.read_body(status, reason, headers, head_request)

    def read_body(self, status, reason, headers, head_request=False):
        """The body of a response whose head read_head() returned."""
        if status < 200 or head_request or status in (204, 304):
            return RawResponse(status, reason, headers, b"")
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while self._line():
                        pass
                    break
                body += self._exact(size)
                self._exact(2)
        elif "content-length" in headers:
            body = self._exact(int(headers["content-length"]))
        else:
            while True:
                try:
                    self._fill()
                except EOFError:
                    break
            body, self.buf = self.buf, b""
        return RawResponse(status, reason, headers, body)


def request_head(method, path, headers):
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: 127.0.0.1"]
    lines += ["%s: %s" % (k, v) for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
