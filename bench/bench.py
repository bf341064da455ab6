#!/usr/bin/python3
"""Benchmark of mod_secupload against its physical limit and its alternatives.

Started by bench/run (which installs the packages and builds the module).
Everything runs on 127.0.0.1 with free ports and temporary directories; every
server is started here and stopped by its PID at the end, on errors and on
Ctrl-C. Figures are medians of --runs repetitions; every ratio is taken
against a baseline measured in the same run. MB = 10^6 bytes, MiB = 2^20.
"""
import argparse
import concurrent.futures as cf
import datetime
import hashlib
import json
import os
import platform
import pwd
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import formats

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(TOP, "bench")
PYTHON = "/usr/bin/python3"
MIB = 1 << 20

MODULE_ON = "mod_secupload (Sync On)"
MODULE_OFF = "mod_secupload (Sync Off)"
MODULE_OFF_V1 = "mod_secupload (Sync Off, format 1)"
DAV = "mod_dav_fs PUT"
DJANGO = "Django + gunicorn"


class BenchError(Exception):
    pass


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{what} exited with status {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise BenchError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f} s")


def run(cmd, timeout, **kw):
    """A bounded command; its stdout as text."""
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if res.returncode != 0:
        raise BenchError(f"{' '.join(cmd[:3])}… failed ({res.returncode}): {res.stderr.strip()[-400:]}")
    return res.stdout


def median(xs):
    return statistics.median(xs) if xs else None


# ---------------------------------------------------------------- processes

def children_of(pid):
    kids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if int(fields[1]) == pid:
            kids.append(int(d))
    return kids


def proc_mem_kib(pid):
    """(VmHWM, VmRSS) in KiB."""
    hwm = rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
            elif line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return hwm, rss


def reset_hwm(pids):
    """Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0)."""
    for pid in pids:
        try:
            with open(f"/proc/{pid}/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass


class RssSampler:
    """Largest VmRSS seen every 10 ms, and VmHWM at the end, of some processes."""

    def __init__(self, pids):
        self.pids = list(pids)
        self.max_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self._stop.is_set():
            for pid in self.pids:
                try:
                    self.max_rss = max(self.max_rss, proc_mem_kib(pid)[1])
                except OSError:
                    pass
            self._stop.wait(0.01)

    def __enter__(self):
        reset_hwm(self.pids)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=2)
        hwm = 0
        for pid in self.pids:
            try:
                hwm = max(hwm, proc_mem_kib(pid)[0])
            except OSError:
                pass
        self.hwm = max(hwm, self.max_rss)
        return False


class Procs:
    """Every server started here, stopped by PID in reverse order."""

    def __init__(self):
        self.procs = []

    def start(self, name, cmd, log_path, env=None, cwd=None):
        out = open(log_path, "ab")
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                cwd=cwd, start_new_session=True)
        out.close()
        self.procs.append((name, proc))
        return proc

    def stop(self, proc, timeout=15.0):
        if proc.poll() is not None:
            return
        kids = children_of(proc.pid)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        for kid in kids:  # a parent killed hard leaves its children behind
            try:
                os.kill(kid, signal.SIGKILL)
            except OSError:
                pass

    def stop_all(self):
        while self.procs:
            name, proc = self.procs.pop()
            try:
                self.stop(proc)
            except Exception as e:  # keep stopping the others
                log(f"could not stop {name} (pid {proc.pid}): {e}")


# ---------------------------------------------------------------- set-up

class Setup:
    def __init__(self, args):
        self.args = args
        self.procs = Procs()
        self.work = tempfile.mkdtemp(prefix="secupload-bench-", dir=args.workdir)
        os.chmod(self.work, 0o755)  # the server's user walks through it
        self.as_root = os.geteuid() == 0
        self.user = "www-data" if self.as_root else pwd.getpwuid(os.geteuid()).pw_name
        self.failures = []
        # private copies: a rebuild during the run cannot change what is measured
        for name in ("mod_secupload.so", "libsecupload.a"):
            src = os.path.join(TOP, ".libs", name)
            if not os.path.isfile(src):
                shutil.rmtree(self.work, ignore_errors=True)
                raise BenchError(f"{src} is missing: run scripts/build.sh")
            shutil.copy2(src, self.path(name))

    def path(self, *parts):
        return os.path.join(self.work, *parts)

    def server_dir(self, *parts):
        d = self.path(*parts)
        os.makedirs(d, exist_ok=True)
        if self.as_root:
            pw = pwd.getpwnam(self.user)
            os.chown(d, pw.pw_uid, pw.pw_gid)
        return d

    def server_copy(self, src, name):
        """A copy of the checkout's directory src that the server's user can
        read: the checkout may be out of its reach (a clone in root's home,
        mode 0700), and gunicorn's workers import the app as that user."""
        dst = self.path(name)
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        for d, _, files in os.walk(dst):
            os.chmod(d, 0o755)
            for f in files:
                os.chmod(os.path.join(d, f), 0o644)
        return dst

    def fail(self, what):
        log("FAILED: " + what)
        self.failures.append(what)

    def build_limit(self):
        exe = self.path("limit")
        cc = shutil.which("gcc") or shutil.which("cc")
        flags = run(["pkg-config", "--cflags", "apr-1", "openssl"], 30).split()
        libs = run(["pkg-config", "--libs", "apr-1", "apr-util-1", "openssl"], 30).split()
        run([cc, "-std=gnu99", "-O2", "-Wall", "-Wextra", "-Werror", "-I", os.path.join(TOP, "src"),
             *flags, os.path.join(BENCH, "limit.c"), self.path("libsecupload.a"),
             *libs, "-o", exe], 120)
        return exe

    def build_seal(self):
        exe = self.path("seal")
        cc = shutil.which("gcc") or shutil.which("cc")
        flags = run(["pkg-config", "--cflags", "apr-1", "openssl"], 30).split()
        libs = run(["pkg-config", "--libs", "apr-1", "apr-util-1", "openssl"], 30).split()
        run([cc, "-std=gnu99", "-O2", "-Wall", "-Wextra", "-Werror", "-I", os.path.join(TOP, "src"),
             *flags, os.path.join(BENCH, "seal.c"), self.path("libsecupload.a"),
             *libs, "-lpthread", "-o", exe], 120)
        return exe

    def start_redis(self):
        self.redis_port = free_port()
        d = self.path("redis")
        os.makedirs(d)
        proc = self.procs.start("redis-server", [
            "redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
            "--dir", d, "--save", "", "--appendonly", "no", "--daemonize", "no",
            "--logfile", os.path.join(d, "redis.log")], os.path.join(d, "stdout.log"))
        wait_port(self.redis_port, proc, "redis-server")
        self.redis_proc = proc

    def start_apache(self, name, one_child, storage=None, prefix=None, defines=()):
        """storage, prefix: another node's (several nodes serve one file set)."""
        port = free_port()
        rundir = self.path(name, "run")
        os.makedirs(rundir)
        port_v1 = free_port()
        env = dict(os.environ,
                   BENCH_RUN_DIR=rundir, BENCH_PORT=str(port), BENCH_PORT_V1=str(port_v1),
                   BENCH_MODULE=self.path("mod_secupload.so"),
                   BENCH_STORAGE_DIR=storage or self.server_dir(name, "storage"),
                   BENCH_KEY_FILE=self.key_file, BENCH_REDIS_PORT=str(self.redis_port),
                   BENCH_REDIS_PREFIX=prefix or f"bench-{name}:",
                   BENCH_DOC_ROOT=self.server_dir(name, "htdocs"),
                   BENCH_DAV_DIR=self.server_dir(name, "davlock"),
                   BENCH_USER=self.user, BENCH_GROUP=self.user)
        self.server_dir(name, "htdocs", "dav")
        cmd = ["/usr/sbin/apache2", "-f", os.path.join(BENCH, "httpd-bench.conf"), "-DFOREGROUND"]
        if self.as_root:
            cmd.append("-DBENCH_AS_ROOT")
        if one_child:
            cmd.append("-DBENCH_ONE_CHILD")
        cmd += ["-D" + d for d in defines]
        proc = self.procs.start(name, cmd, os.path.join(rundir, "stdout.log"), env=env)
        try:
            wait_port(port, proc, f"Apache ({name})")
        except BenchError:
            tail = open(os.path.join(rundir, "error.log"), errors="replace").read()[-1500:] \
                if os.path.exists(os.path.join(rundir, "error.log")) else ""
            raise BenchError(f"Apache ({name}) did not start:\n{tail}")
        return {"proc": proc, "port": port, "url": f"http://127.0.0.1:{port}",
                "url_v1": f"http://127.0.0.1:{port_v1}",
                "htdocs": self.path(name, "htdocs"), "storage": self.path(name, "storage"),
                "rundir": rundir}

    def start_django(self):
        port = free_port()
        d = self.path("django")
        os.makedirs(d)
        storage = self.server_dir("django", "storage")
        tmp = self.server_dir("django", "tmp")
        workers = os.cpu_count() or 1
        env = dict(os.environ, BENCH_DJANGO_STORAGE=storage, BENCH_DJANGO_TMP=tmp,
                   BENCH_DJANGO_KEY_HEX=os.urandom(32).hex(),
                   DJANGO_SETTINGS_MODULE="benchapp.settings", PYTHONDONTWRITEBYTECODE="1")
        env.pop("PYTHONPATH", None)
        cmd = [PYTHON, "-m", "gunicorn", "--workers", str(workers), "--bind", f"127.0.0.1:{port}",
               "--timeout", "600", "--graceful-timeout", "5", "--log-level", "warning",
               "--chdir", self.server_copy(os.path.join(BENCH, "peers", "django_app"), "django_app"),
               "benchapp.wsgi:application"]
        if self.as_root:
            cmd[3:3] = ["--user", self.user, "--group", self.user]
        proc = self.procs.start("gunicorn", cmd, os.path.join(d, "gunicorn.log"), env=env)
        wait_port(port, proc, "gunicorn")
        deadline = time.monotonic() + 20
        while len(children_of(proc.pid)) < workers and time.monotonic() < deadline:
            time.sleep(0.1)
        return {"proc": proc, "port": port, "url": f"http://127.0.0.1:{port}",
                "storage": storage, "workers": workers}

    def start_all(self, django=True):
        self.key_file = self.path("kek.hex")
        with open(os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400), "w") as f:
            f.write(os.urandom(32).hex() + "\n")
        self.start_redis()
        self.apache = self.start_apache("apache", one_child=False)
        if not django:   # --only nodes needs no peer
            self.django = {"url": "-", "workers": 0, "proc": None}
            log(f"Apache on {self.apache['url']}, redis on {self.redis_port}")
            return
        self.django = self.start_django()
        log(f"Apache on {self.apache['url']}, gunicorn ({self.django['workers']} workers) on "
            f"{self.django['url']}, redis on {self.redis_port}, work dir {self.work}")

    def start_replica(self):
        """A replica of the bench's Redis, linked before this returns."""
        port = free_port()
        d = self.path("redis-replica")
        os.makedirs(d)
        proc = self.procs.start("redis-replica", [
            "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", d,
            "--save", "", "--appendonly", "no", "--daemonize", "no",
            "--replicaof", "127.0.0.1", str(self.redis_port),
            "--logfile", os.path.join(d, "redis.log")], os.path.join(d, "stdout.log"))
        wait_port(port, proc, "redis-server (replica)")
        deadline = time.monotonic() + 20
        while "master_link_status:up" not in redis_info(port, "replication"):
            if time.monotonic() > deadline:
                raise BenchError("the Redis replica did not link")
            time.sleep(0.1)
        return proc

    def serving_pids(self, system):
        if system == DJANGO:
            return children_of(self.django["proc"].pid)
        return children_of(self.apache["proc"].pid)

    def cleanup(self):
        self.procs.stop_all()

    def remove_work(self):
        if self.args.keep:
            log(f"kept {self.work}")
        elif os.path.isdir(self.work):
            log(f"removing {self.work}")
            shutil.rmtree(self.work, ignore_errors=True)


def make_file(path, size):
    """size random bytes; returns the SHA-256 hex of them."""
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left > 0:
            b = os.urandom(min(left, 4 * MIB))
            h.update(b)
            f.write(b)
            left -= len(b)
    return h.hexdigest()


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(4 * MIB), b""):
            h.update(b)
    return h.hexdigest()


# ---------------------------------------------------------------- clients

def curl(args, timeout):
    """(http code, seconds, bytes up, bytes down, body)."""
    out = run(["curl", "-sS", "-H", "Expect:", "--max-time", str(int(timeout)),
               "-w", "\\n%{http_code} %{time_total} %{size_upload} %{size_download}", *args],
              timeout + 10)
    body, _, tail = out.rpartition("\n")
    code, secs, up, down = tail.split()
    return int(code), float(secs), int(float(up)), int(float(down)), body


def upload(st, system, path, size, sha, timeout, tag):
    """One upload of path; checks the answer; returns (MB/s, id or None)."""
    if system in (MODULE_ON, MODULE_OFF):
        loc = "/api/upload/" if system == MODULE_ON else "/api/upload-nosync/"
        code, secs, _, _, body = curl(["-F", f"file=@{path};type=application/octet-stream",
                                       st.apache["url"] + loc], timeout)
        try:
            js = json.loads(body)
        except ValueError:
            js = {}
        if code != 201 or js.get("size") != size or js.get("sha256") != sha:
            raise BenchError(f"{system}: upload answered {code} {body[:200]}")
        return size / secs / 1e6, js["id"]
    if system == DAV:
        name = f"{tag}.bin"
        code, secs, _, _, body = curl(["-T", path, f"{st.apache['url']}/dav/{name}"], timeout)
        stored = os.path.join(st.apache["htdocs"], "dav", name)
        if code not in (201, 204) or os.path.getsize(stored) != size:
            raise BenchError(f"{system}: PUT answered {code} {body[:200]}")
        return size / secs / 1e6, name
    code, secs, _, _, body = curl(["-F", f"file=@{path};type=application/octet-stream",
                                   st.django["url"] + "/upload/"], timeout)
    try:
        js = json.loads(body)
    except ValueError:
        js = {}
    if code != 200 or js.get("status") != "ok":
        raise BenchError(f"{system}: upload answered {code} {body[:200]}")
    return size / secs / 1e6, None


def quiet_disk():
    """Write out what earlier runs left dirty, so that its writeback (CPU
    time in the kernel's flusher threads, on these 2 cores) does not fall
    into the next measurement, whichever system that is."""
    os.sync()
    time.sleep(0.5)


def download_check(url, size, sha, timeout):
    """Stream a download and compare it with the original."""
    h = hashlib.sha256()
    n = 0
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        if resp.status != 200:
            raise BenchError(f"GET {url}: {resp.status}")
        for b in iter(lambda: resp.read(MIB), b""):
            h.update(b)
            n += len(b)
    if n != size or h.hexdigest() != sha:
        raise BenchError(f"GET {url}: {n} bytes, content differs from the upload")
    return True


def download(url, size, timeout):
    """(MB/s, seconds to the first byte of the body)."""
    out = run(["curl", "-sS", "--max-time", str(int(timeout)), "-o", "/dev/null", "-w",
               "%{http_code} %{time_total} %{time_starttransfer} %{size_download}", url],
              timeout + 10)
    code, secs, first, down = out.split()
    if int(code) != 200 or int(float(down)) != size:
        raise BenchError(f"GET {url}: {code}, {down} of {size} bytes")
    return size / float(secs) / 1e6, float(first)


def redis_info(port, section):
    """INFO section of the Redis on port, as text (redis-cli)."""
    return run(["redis-cli", "-p", str(port), "INFO", section], 30)


def redis_counts(port):
    """calls per command, and network bytes in and out, of the Redis on port."""
    calls = {m.group(1): int(m.group(2)) for m in re.finditer(
        r"^cmdstat_([a-z|]+):calls=(\d+)", redis_info(port, "commandstats"), re.M)}
    stats = dict(l.split(":", 1) for l in redis_info(port, "stats").splitlines() if ":" in l)
    return calls, int(stats["total_net_input_bytes"]), int(stats["total_net_output_bytes"])


def cpu_ticks(pids):
    """utime + stime (clock ticks) of pids, and the machine's busy and total."""
    own = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            own += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    with open("/proc/stat") as f:
        cpu = [int(x) for x in f.readline().split()[1:]]
    return own, sum(cpu) - cpu[3] - cpu[4], sum(cpu)


def wrk(url, mode, target, conns, seconds, size=4096):
    threads = max(1, min(conns, os.cpu_count() or 1))
    cmd = ["wrk", "-t", str(threads), "-c", str(conns), "-d", f"{seconds}s", "--timeout", "10s",
           "-s", os.path.join(BENCH, "wrk", "upload.lua"), url, "--", mode, target, str(size)]
    out = run(cmd, seconds + 60)
    m = re.search(r"^BENCH (\{.*\})$", out, re.M)
    if not m:
        raise BenchError(f"wrk printed no result: {out[-300:]}")
    r = json.loads(m.group(1))
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6) if r["duration_us"] else 0.0
    return r


# ---------------------------------------------------------------- the parts

class Bench:
    def __init__(self, st, args):
        self.st = st
        self.a = args
        self.res = {}

    def guard(self, what, fn, *a):
        try:
            return fn(*a)
        except (BenchError, subprocess.TimeoutExpired, OSError, ValueError) as e:
            self.st.fail(f"{what}: {e}")
            return None

    # 1. the limit
    def limit_once(self, mode):
        """One run of bench/limit.c: {mode: MB/s} (decrypt also gives reader)."""
        args = [self.limit_exe, mode, str(self.a.limit_bytes)]
        if mode == "decrypt":
            args.append(self.st.path("limit.enc"))
        out = run(args, 600)
        return {js["mode"]: js["mb_per_s"] for js in map(json.loads, out.splitlines())}

    def limit(self):
        a = self.a
        enc, dec, rdr = [], [], []
        for _ in range(a.runs):
            enc.append(self.limit_once("encrypt")["encrypt"])
            d = self.limit_once("decrypt")
            dec.append(d["decrypt"])
            rdr.append(d["reader"])
        speed = {}
        for label, extra in (("aes-256-cbc encrypt", []), ("aes-256-cbc decrypt", ["-decrypt"])):
            out = run(["openssl", "speed", "-seconds", str(a.speed_seconds), "-bytes", "65536",
                       *extra, "-evp", "aes-256-cbc"], 120)
            speed[label] = float(out.strip().splitlines()[-1].split()[-1].rstrip("k")) / 1000
        out = run(["openssl", "speed", "-seconds", str(a.speed_seconds), "-bytes", "65536",
                   "-evp", "sha256"], 120)
        speed["sha256"] = float(out.strip().splitlines()[-1].split()[-1].rstrip("k")) / 1000
        self.res["limit"] = {
            "encrypt_mb_s": median(enc), "decrypt_mb_s": median(dec), "reader_mb_s": median(rdr),
            "runs": {"encrypt": enc, "decrypt": dec, "reader": rdr},
            "bytes": a.limit_bytes, "chunk": 65536, "openssl_speed_mb_s": speed}
        log(f"limit: encrypt {median(enc):.0f} MB/s, decrypt+verify {median(dec):.0f} MB/s")

    # 2. large uploads, 4. reading back
    def large(self):
        """Repetition by repetition: the encrypt limit, then every system once,
        so that each upload's ratio to the limit pairs figures taken moments
        apart (the machine's load drifts) and the median of those is kept."""
        a, st = self.a, self.st
        size = a.large_bytes
        path = st.path("large.bin")
        sha = make_file(path, size)
        self.large_file = (path, size, sha)
        timeout = max(120, size / 5e6)
        systems = (MODULE_ON, MODULE_OFF, DAV, DJANGO)
        speeds = {s: [] for s in systems}
        ratios = {s: [] for s in systems}
        hwm = {s: 0 for s in systems}
        broken, ids, limits = set(), {}, []
        for i in range(a.runs):
            quiet_disk()
            lim = self.limit_once("encrypt")["encrypt"]
            limits.append(lim)
            for system in systems:
                if system in broken:
                    continue
                quiet_disk()
                with RssSampler(st.serving_pids(system)) as smp:
                    r = self.guard(f"large upload, {system}", upload, st, system, path, size, sha,
                                   timeout, f"large-{i}")
                if r is None:
                    broken.add(system)
                    continue
                speeds[system].append(r[0])
                ratios[system].append(r[0] / lim)
                self._drop_stored(system, ids.get(system))
                ids[system] = r[1]
                hwm[system] = max(hwm[system], smp.hwm)
        rows = []
        for system in systems:
            rows.append({"system": system, "mb_s": median(speeds[system]), "runs": speeds[system],
                         "ratio_to_limit": median(ratios[system]),
                         "peak_rss_mib": hwm[system] / 1024 if speeds[system] else None})
            if speeds[system]:
                log(f"large upload {system}: {median(speeds[system]):.0f} MB/s, "
                    f"{median(ratios[system]):.0%} of the limit")
        self.res["large_upload"] = {"bytes": size, "encrypt_limit_runs": limits, "systems": rows}
        self._download(ids, size, sha, timeout)

    # 6. a resumable upload (tus) against a one-shot upload of the same file
    def tus(self):
        """The same file uploaded in one request, then with the tus protocol
        in 8 MiB PATCHes (each fsynced, its state written to Redis, the
        whole file verified at the end), both through SecUploadSync On, one
        after the other in each repetition."""
        import requests
        a, st = self.a, self.st
        size = a.tus_bytes
        path = st.path("tus.bin")
        sha = make_file(path, size)
        one, res, verify = [], [], []
        for i in range(a.runs):
            quiet_disk()
            one.append(upload(st, MODULE_ON, path, size, sha, 600, f"tus-one-{i}")[0])
            quiet_disk()
            mbs, fid = self._tus_once(requests, path, size, sha)
            res.append(mbs)
        self.res["tus"] = {"bytes": size, "patch_bytes": a.tus_patch,
                           "one_shot_mb_s": median(one), "tus_mb_s": median(res),
                           "runs": {"one_shot": one, "tus": res},
                           "ratio": median(res) / median(one)}
        log(f"tus: {size >> 20} MiB in {a.tus_patch >> 20} MiB PATCHes {median(res):.0f} MB/s, "
            f"one-shot {median(one):.0f} MB/s ({median(res) / median(one):.0%})")

    def _tus_once(self, requests, path, size, sha):
        base = self.st.apache["url"]
        tus = {"Tus-Resumable": "1.0.0"}
        t0 = time.monotonic()
        r = requests.post(base + "/api/tus/", headers=dict(tus, **{"Upload-Length": str(size)}),
                          timeout=60)
        if r.status_code != 201:
            raise BenchError(f"tus: creation answered {r.status_code} {r.text[:200]}")
        url = base + r.headers["Location"]
        off = 0
        with open(path, "rb") as f:
            while off < size:
                chunk = f.read(self.a.tus_patch)
                r = requests.patch(url, data=chunk, timeout=600, headers=dict(tus, **{
                    "Upload-Offset": str(off), "Content-Type": "application/offset+octet-stream"}))
                if r.status_code != 204:
                    raise BenchError(f"tus: PATCH answered {r.status_code} {r.text[:200]}")
                off += len(chunk)
        secs = time.monotonic() - t0
        fid = r.headers.get("X-Secupload-Id")
        meta = requests.get(f"{base}/api/files/{fid}/meta", timeout=60).json()
        if meta.get("sha256") != sha:
            raise BenchError(f"tus: stored sha256 {meta.get('sha256')} is not the file's")
        requests.delete(f"{base}/api/files/{fid}", timeout=60)
        return size / secs / 1e6, fid

    def _drop_stored(self, system, ident):
        """Keep the disk from filling up with earlier runs' copies."""
        st = self.st
        if system == DJANGO:
            for name in os.listdir(st.django["storage"]):
                os.unlink(os.path.join(st.django["storage"], name))
        elif system != DAV and ident:
            os.unlink(os.path.join(st.apache["storage"], ident[:2], ident + ".enc"))

    def _download(self, ids, size, sha, timeout):
        a, st = self.a, self.st
        targets = []
        if MODULE_OFF in ids:
            targets.append(("mod_secupload GET /api/files/{id}",
                            f"{st.apache['url']}/api/files/{ids[MODULE_OFF]}"))
        if DAV in ids:
            targets.append(("Apache GET of the plain file (/dav/)",
                            f"{st.apache['url']}/dav/{ids[DAV]}"))
        targets = [t for t in targets
                   if self.guard(f"download check, {t[0]}", download_check, t[1], size, sha,
                                 timeout)]
        speeds = {t[0]: [] for t in targets}
        ratios = {t[0]: [] for t in targets}
        firsts = {t[0]: [] for t in targets}
        hwm = {t[0]: 0 for t in targets}
        limits = []
        for _ in range(a.runs):
            quiet_disk()
            lim = self.limit_once("decrypt")["decrypt"]
            limits.append(lim)
            for system, url in targets:
                quiet_disk()
                with RssSampler(st.serving_pids(DAV)) as smp:
                    r = self.guard(f"download, {system}", download, url, size, timeout)
                if r is None:
                    continue
                speeds[system].append(r[0])
                firsts[system].append(r[1])
                ratios[system].append(r[0] / lim)
                hwm[system] = max(hwm[system], smp.hwm)
        rows = []
        for system, _ in targets:
            mine = "secupload" in system
            row = {"system": system, "mb_s": median(speeds[system]), "runs": speeds[system],
                   "first_byte_s": firsts[system],
                   "ratio_to_limit": median(ratios[system]) if mine else None,
                   "peak_rss_mib": hwm[system] / 1024 if speeds[system] else None}
            if mine and speeds[system]:
                # the tag is checked before the first byte: time to it is the
                # verification pass, the rest the decrypt-and-send pass
                total = [size / v / 1e6 for v in speeds[system]]
                row["verify_mb_s"] = median([size / f / 1e6 for f in firsts[system]])
                row["send_mb_s"] = median([size / (t - f) / 1e6
                                           for t, f in zip(total, firsts[system]) if t > f])
            rows.append(row)
            if speeds[system]:
                log(f"download {system}: {median(speeds[system]):.0f} MB/s")
        self.res["download"] = {"bytes": size, "decrypt_limit_runs": limits, "systems": rows}

    # 3. small uploads
    def small(self):
        a = self.a
        rows = []
        for system in (MODULE_ON, MODULE_OFF, MODULE_OFF_V1, DAV, DJANGO):
            runs = []
            # one second untimed first: connections, threads and caches warm
            self.guard(f"small uploads warm-up, {system}", self._wrk_one, system, a.conns, 1, "w-")
            for i in range(a.runs):
                r = self.guard(f"small uploads, {system}", self._wrk_one, system, a.conns,
                               a.wrk_seconds, f"s{i}-")
                if r is None:
                    break
                runs.append(r)
            rows.append(self._wrk_summary(system, a.conns, runs))
            if runs:
                log(f"small uploads {system}: {rows[-1]['rps']:.0f} req/s, p99 "
                    f"{rows[-1]['p99_ms']:.1f} ms, non-2xx {rows[-1]['non2xx']}")
        self.res["small_upload"] = {"bytes": 4096, "connections": a.conns,
                                    "seconds": a.wrk_seconds, "systems": rows}

    def _wrk_one(self, system, conns, seconds, tag):
        st = self.st
        if system == DJANGO:
            r = wrk(st.django["url"], "multipart", "/upload/", conns, seconds)
        elif system == DAV:
            r = wrk(st.apache["url"], "put", f"/dav/{tag}c{conns}-", conns, seconds)
        else:
            loc = "/api/upload/" if system == MODULE_ON else "/api/upload-nosync/"
            # format 1 from the virtual host that still writes it
            url = st.apache["url_v1"] if system == MODULE_OFF_V1 else st.apache["url"]
            r = wrk(url, "multipart", loc, conns, seconds)
        if r["requests"] == 0 or r["non2xx"] > 0:
            raise BenchError(f"{r['requests']} requests, {r['non2xx']} answered non-2xx")
        return r

    @staticmethod
    def _wrk_summary(system, conns, runs):
        if not runs:
            return {"system": system, "connections": conns, "rps": None, "runs": []}
        return {"system": system, "connections": conns,
                "rps": median([r["rps"] for r in runs]),
                "p50_ms": median([r["p50_us"] for r in runs]) / 1000,
                "p99_ms": median([r["p99_us"] for r in runs]) / 1000,
                "non2xx": sum(r["non2xx"] for r in runs),
                "socket_errors": sum(r["socket_errors"] for r in runs),
                "runs": runs}

    # 6. scaling
    def scaling(self):
        a = self.a
        rows = []
        for conns in a.scale_conns:
            for system in (MODULE_OFF, DAV):
                runs = []
                for i in range(a.runs):
                    r = self.guard(f"scaling {conns} connections, {system}", self._wrk_one,
                                   system, conns, a.scale_seconds, f"x{i}-")
                    if r is None:
                        break
                    runs.append(r)
                rows.append(self._wrk_summary(system, conns, runs))
            log(f"scaling {conns} connections: " + ", ".join(
                f"{r['system']} {r['rps']:.0f} req/s" for r in rows[-2:] if r["rps"]))
        self.res["scaling"] = {"seconds": a.scale_seconds, "rows": rows}

    # 7. several nodes on one storage directory and one Redis (--only nodes)
    def nodes(self):
        a, st = self.a, self.st
        self.replica = st.start_replica()
        storage, prefix = st.apache["storage"], "bench-apache:"
        b = st.start_apache("apache-b", False, storage=storage, prefix=prefix)
        w = st.start_apache("apache-wait", False, storage=storage, prefix=prefix,
                            defines=["BENCH_WAIT"])
        rows = []
        for label, nodes in (("1 node", [st.apache]), ("2 nodes", [st.apache, b]),
                             ("1 node, SecUploadRedisWaitReplicas 1", [w])):
            self.guard(f"nodes warm-up, {label}", self._nodes_run, label, nodes, 1)
            runs = [r for r in (self.guard(f"nodes, {label}", self._nodes_run, label, nodes,
                                           a.wrk_seconds) for _ in range(a.runs)) if r]
            if runs:
                row = {k: median([r[k] for r in runs]) for k in runs[0]
                       if k not in ("label", "commands")}
                row["label"], row["commands"] = label, runs[-1]["commands"]
                rows.append(row)
                log(f"nodes {label}: {row['rps']:.0f} uploads/s, machine CPU "
                    f"{row['machine_busy']:.0%}, Apache {row['apache_cpu_ms']:.2f} ms and "
                    f"Redis {row['redis_cpu_ms']:.3f} ms CPU per upload, "
                    f"{row['redis_cmds']:.1f} Redis commands, {row['redis_in_bytes']:.0f} B in / "
                    f"{row['redis_out_bytes']:.0f} B out per upload")
        self.res["nodes"] = {"bytes": 4096, "connections": a.conns, "seconds": a.wrk_seconds,
                             "rows": rows}

    def _nodes_run(self, label, nodes, seconds):
        """wrk on every node at once (the connections shared out); the sums."""
        st = self.st
        apids = [p for n in nodes for p in [n["proc"].pid] + children_of(n["proc"].pid)]
        rpids = [st.redis_proc.pid]
        calls0, in0, out0 = redis_counts(st.redis_port)
        a0, r0, (_, busy0, all0) = cpu_ticks(apids)[0], cpu_ticks(rpids)[0], cpu_ticks([])
        with cf.ThreadPoolExecutor(len(nodes)) as ex:
            res = list(ex.map(lambda n: wrk(n["url"], "multipart", "/api/upload/",
                                            max(1, self.a.conns // len(nodes)), seconds),
                              nodes))
        a1, r1, (_, busy1, all1) = cpu_ticks(apids)[0], cpu_ticks(rpids)[0], cpu_ticks([])
        calls1, in1, out1 = redis_counts(st.redis_port)
        n = sum(r["requests"] for r in res)
        if n == 0 or any(r["non2xx"] for r in res):
            raise BenchError(f"{label}: {n} requests, "
                             f"{sum(r['non2xx'] for r in res)} answered non-2xx")
        hz = os.sysconf("SC_CLK_TCK")
        return {"label": label, "rps": sum(r["rps"] for r in res),
                "p99_ms": max(r["p99_us"] for r in res) / 1000,
                "machine_busy": (busy1 - busy0) / max(1, all1 - all0),
                "apache_cpu_ms": (a1 - a0) * 1000 / hz / n,
                "redis_cpu_ms": (r1 - r0) * 1000 / hz / n,
                "redis_cmds": (sum(calls1.values()) - sum(calls0.values())) / n,
                "redis_in_bytes": (in1 - in0) / n, "redis_out_bytes": (out1 - out0) / n,
                "commands": {k: (calls1.get(k, 0) - calls0.get(k, 0)) / n for k in calls1
                             if calls1.get(k, 0) != calls0.get(k, 0)}}

    # an upload's work in memory, format 1 against 2, on 1 and 2 cores
    # (optional: --only seal; bench/seal.c)
    def seal(self):
        a, exe = self.a, self.st.build_seal()
        size = str(a.large_bytes // 2)
        cases = [("1", [size])] + [("2", [size, "65536", str(t)]) for t in (1, 2)] \
            + [("2", [size, str(s), "2"]) for s in (16384, 262144, 1048576)]
        rows = []
        for cores in ("0", "0,1"):
            for fmt, args in cases:
                runs = [json.loads(run(["taskset", "-c", cores, exe, fmt, *args], 600))
                        for _ in range(a.runs)]
                r = dict(runs[0], cores=cores, mb_s=median([x["mb_per_s"] for x in runs]),
                         cpu_ns_per_byte=median([x["cpu_s"] / x["bytes"] * 1e9 for x in runs]),
                         runs=[x["mb_per_s"] for x in runs])
                rows.append(r)
                log(f"seal cores {cores} format {fmt} segsize {r['segsize']} threads "
                    f"{r['threads']}: {r['mb_s']:.0f} MB/s, {r['cpu_ns_per_byte']:.2f} ns/B")
        self.res["seal"] = {"rows": rows, "load_average": os.getloadavg()}

    # where the upload path spends its time (optional: --only profile)
    def profile(self):
        a, st = self.a, self.st
        if not shutil.which("perf"):
            raise BenchError("perf is not installed (Debian package linux-perf)")
        size = a.large_bytes
        path = st.path("profile.bin")
        sha = make_file(path, size)
        out = {}
        for label in ("upload", "download", "small uploads"):
            data = st.path(f"perf-{label.replace(' ', '-')}.data")
            pids = ",".join(map(str, st.serving_pids(DAV)))
            rec = subprocess.Popen(["perf", "record", "-F", "1999", "-g", "-o", data, "-p", pids],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=True)
            try:
                time.sleep(0.5)
                if label == "upload":
                    _, ident = upload(st, MODULE_OFF, path, size, sha, max(120, size / 5e6), "p")
                elif label == "download":
                    download(f"{st.apache['url']}/api/files/{ident}", size, max(120, size / 5e6))
                else:
                    self._wrk_one(MODULE_OFF, a.conns, a.wrk_seconds, "p-")
            finally:
                rec.send_signal(signal.SIGINT)
                rec.wait(timeout=60)
            rep = run(["perf", "report", "-i", data, "--stdio", "--no-children", "-g", "none",
                       "--sort", "dso,symbol"], 300)
            top = summarise_profile(rep)[:25]
            out[label] = [{"percent": round(pct, 2), "where": where} for where, pct in top]
            what = f"one {size >> 20} MiB {label}" if label != "small uploads" else \
                f"4 KiB uploads, {a.conns} connections, {a.wrk_seconds} s"
            log(f"profile of {what} (mod_secupload, Sync Off, all Apache children):\n"
                + "\n".join(f"  {pct:6.2f}%  {where}" for where, pct in top))
        self.res["profile"] = out

    # 7. reading back, format v1 against v2 (bench/formats.py)
    def formats(self):
        self.res["formats"] = formats.Formats(self).run()

    # 5. memory
    def memory(self):
        st = self.st
        srv = st.start_apache("apache1", one_child=True)
        try:
            kids = children_of(srv["proc"].pid)
            if len(kids) != 1:
                raise BenchError(f"expected one Apache child, found {len(kids)}")
            self.res["memory"] = self._memory_runs(srv, kids)
        finally:
            st.procs.stop(srv["proc"])

    def _memory_runs(self, srv, kids):
        a, st = self.a, self.st
        # warm the child up with the smallest size (modules, Redis connection,
        # OpenSSL tables, the thread's allocator), then the sizes to compare
        rows = []
        for n, size in enumerate([a.mem_sizes[0]] + a.mem_sizes):
            if size == self.large_file[1]:
                path, _, sha = self.large_file
            else:
                path = st.path(f"mem-{size}.bin")
                sha = make_file(path, size)
            timeout = max(120, size / 5e6)
            row = {"bytes": size}
            idle = proc_mem_kib(kids[0])[1]
            with RssSampler(kids) as s:
                code, secs, _, _, body = curl(["-F", f"file=@{path};type=application/octet-stream",
                                               srv["url"] + "/api/upload-nosync/"], timeout)
            js = json.loads(body) if body.startswith("{") else {}
            if code != 201 or js.get("sha256") != sha:
                raise BenchError(f"memory upload of {size} bytes answered {code} {body[:200]}")
            row.update(upload_hwm_mib=s.hwm / 1024, idle_rss_mib=idle / 1024,
                       upload_mb_s=size / secs / 1e6)
            url = f"{srv['url']}/api/files/{js['id']}"
            with RssSampler(kids) as s:
                download_check(url, size, sha, timeout)
            row["download_hwm_mib"] = s.hwm / 1024
            name = f"mem-{size}.bin"
            with RssSampler(kids) as s:
                code, *_ = curl(["-T", path, f"{srv['url']}/dav/{name}"], timeout)
            if code not in (201, 204):
                raise BenchError(f"memory PUT of {size} bytes answered {code}")
            row["dav_put_hwm_mib"] = s.hwm / 1024
            os.unlink(os.path.join(srv["htdocs"], "dav", name))
            os.unlink(os.path.join(srv["storage"], js["id"][:2], js["id"] + ".enc"))
            if path != self.large_file[0]:
                os.unlink(path)
            if n == 0:
                continue
            rows.append(row)
            log(f"memory {size >> 20} MiB: upload peak {row['upload_hwm_mib']:.1f} MiB, "
                f"download peak {row['download_hwm_mib']:.1f} MiB")
        return {"mpm": "event, StartServers 1, ServerLimit 1, ThreadsPerChild 1 (one child, "
                       "one worker thread: every request runs on the same thread)",
                "measure": "VmHWM of the child, reset through /proc/PID/clear_refs before "
                           "each request; VmRSS sampled every 10 ms as a floor",
                "rows": rows}


# ---------------------------------------------------------------- report

LIBCRYPTO_KINDS = (("aesenc", "libcrypto: AES-NI encrypt (aesni_cbc_encrypt)"),
                   ("aesdec", "libcrypto: AES-NI decrypt (aesni_cbc_encrypt)"),
                   ("sha256rnds2", "libcrypto: SHA-256 with SHA-NI (sha256_block_data_order)"),
                   ("sha256msg", "libcrypto: SHA-256 with SHA-NI (sha256_block_data_order)"))


def classify_stripped(lib, addr, cache):
    """Debian's libcrypto has no symbols for its assembly: name a sample
    address by the instructions around it."""
    key = (lib, addr >> 6)
    if key not in cache:
        try:
            dis = run(["objdump", "-d", "--no-show-raw-insn", f"--start-address={max(0, addr - 48)}",
                       f"--stop-address={addr + 24}", lib], 30)
        except (BenchError, OSError, subprocess.SubprocessError):
            dis = ""
        cache[key] = next((name for insn, name in LIBCRYPTO_KINDS if insn in dis),
                          "libcrypto: other")
    return cache[key]


def summarise_profile(report):
    """perf report --sort dso,symbol → [(where, percent)], stripped libcrypto
    addresses folded into what they compute."""
    libs = {}
    totals, cache = {}, {}
    for line in report.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(\S+)", line)
        if not m:
            continue
        pct, dso, _, sym = float(m.group(1)), m.group(2), m.group(3), m.group(4)
        if sym.startswith("0x") and dso.startswith("libcrypto"):
            lib = libs.setdefault(dso, shutil.which(dso) or
                                  next((os.path.join(d, dso) for d in
                                        ("/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu",
                                         "/usr/lib64", "/usr/lib")
                                        if os.path.exists(os.path.join(d, dso))), dso))
            where = classify_stripped(lib, int(sym, 16), cache)
        elif dso.startswith("[kernel"):
            where = f"kernel: {sym}"
        else:
            where = f"{dso}: {sym}"
        totals[where] = totals.get(where, 0.0) + pct
    return sorted(totals.items(), key=lambda kv: -kv[1])

def ratio(x, base):
    return x / base if x and base else None


def build_table(res):
    rows = []
    lim = res.get("limit", {})
    enc, dec = lim.get("encrypt_mb_s"), lim.get("decrypt_mb_s")

    def add(section, system, value, unit, vs_limit=None, vs_dav=None, p50=None, p99=None,
            non2xx=None, rss=None):
        rows.append({"section": section, "system": system, "value": value, "unit": unit,
                     "ratio_to_limit": vs_limit, "ratio_to_mod_dav": vs_dav, "p50_ms": p50,
                     "p99_ms": p99, "non2xx": non2xx, "peak_rss_mib": rss})

    if lim:
        add("limit", "su_enc_* encrypt (1 core, memory)", enc, "MB/s", 1.0)
        add("limit", "su_dec_* decrypt+verify (1 core)", dec, "MB/s", 1.0)
        add("limit", "su_fmt_reader_* (file in page cache)", lim.get("reader_mb_s"), "MB/s",
            ratio(lim.get("reader_mb_s"), dec))
        for k, v in lim.get("openssl_speed_mb_s", {}).items():
            add("limit", f"openssl speed -evp {k} (64 KiB)", v, "MB/s")
    lu = res.get("large_upload", {}).get("systems", [])
    dav = next((r["mb_s"] for r in lu if r["system"] == DAV), None)
    for r in lu:
        add("large upload", r["system"], r["mb_s"], "MB/s", r.get("ratio_to_limit"),
            ratio(r["mb_s"], dav), rss=r.get("peak_rss_mib"))
    dl = res.get("download", {}).get("systems", [])
    plain = next((r["mb_s"] for r in dl if "plain" in r["system"]), None)
    sha = lim.get("openssl_speed_mb_s", {}).get("sha256")
    for r in dl:
        add("download", r["system"], r["mb_s"], "MB/s", r.get("ratio_to_limit"),
            ratio(r["mb_s"], plain), rss=r.get("peak_rss_mib"))
        if r.get("verify_mb_s"):
            # the two passes against what bounds each: SHA-256 (the HMAC)
            # and Apache's own sending of a plain file
            add("download", "  pass 1: verify tag (x sha256 speed)", r["verify_mb_s"],
                "MB/s", ratio(r["verify_mb_s"], sha))
            add("download", "  pass 2: decrypt+send (x plain GET)", r.get("send_mb_s"),
                "MB/s", None, ratio(r.get("send_mb_s"), plain))
    su = res.get("small_upload", {}).get("systems", [])
    dav = next((r["rps"] for r in su if r["system"] == DAV), None)
    for r in su:
        add("small upload", r["system"], r["rps"], "req/s", None, ratio(r["rps"], dav),
            r.get("p50_ms"), r.get("p99_ms"), r.get("non2xx"))
    sc = res.get("scaling", {}).get("rows", [])
    for r in sc:
        base = next((x["rps"] for x in sc if x["system"] == DAV
                     and x["connections"] == r["connections"]), None)
        add("scaling", f"{r['system']}, {r['connections']} conn", r["rps"], "req/s", None,
            ratio(r["rps"], base), r.get("p50_ms"), r.get("p99_ms"), r.get("non2xx"))
    for r in res.get("memory", {}).get("rows", []):
        mib = r["bytes"] / MIB
        add("memory", f"mod_secupload upload {mib:.0f} MiB", r["upload_hwm_mib"], "MiB RSS",
            rss=r["upload_hwm_mib"])
        add("memory", f"mod_secupload download {mib:.0f} MiB", r["download_hwm_mib"], "MiB RSS",
            rss=r["download_hwm_mib"])
        add("memory", f"mod_dav_fs PUT {mib:.0f} MiB", r["dav_put_hwm_mib"], "MiB RSS",
            rss=r["dav_put_hwm_mib"])
    formats.table_rows(res, add)
    return rows


def targets(res):
    out = []

    def t(name, ok, detail):
        out.append({"target": name, "met": ok, "detail": detail})

    lrows = res.get("large_upload", {}).get("systems", [])
    lu = {r["system"]: r["mb_s"] for r in lrows}
    for r in lrows:
        if r["system"] in (MODULE_ON, MODULE_OFF) and r.get("ratio_to_limit"):
            q = r["ratio_to_limit"]
            t(f"large upload >= 85% of the encrypt limit, {r['system']}", q >= 0.85, f"{q:.0%}")
    for r in res.get("download", {}).get("systems", []):
        if "secupload" in r["system"] and r.get("ratio_to_limit"):
            q = r["ratio_to_limit"]
            t("download >= 85% of the decrypt limit", q >= 0.85, f"{q:.0%}")
    mem = res.get("memory", {}).get("rows", [])
    if len(mem) >= 2:
        d = mem[-1]["upload_hwm_mib"] - mem[0]["upload_hwm_mib"]
        t(f"{mem[-1]['bytes'] >> 20} MiB upload peak RSS within 1 MiB of the "
          f"{mem[0]['bytes'] >> 20} MiB one", abs(d) <= 1.0, f"difference {d:+.2f} MiB")
    if len(mem) >= 2:
        d = mem[-1]["download_hwm_mib"] - mem[0]["download_hwm_mib"]
        t(f"{mem[-1]['bytes'] >> 20} MiB download peak RSS within 1 MiB of the "
          f"{mem[0]['bytes'] >> 20} MiB one", abs(d) <= 1.0, f"difference {d:+.2f} MiB")
    for name in (MODULE_ON, MODULE_OFF):
        if lu.get(name) and lu.get(DAV):
            t(f"large upload faster than mod_dav_fs PUT, {name}", lu[name] > lu[DAV],
              f"{lu[name] / lu[DAV]:.2f}x")
        if lu.get(name) and lu.get(DJANGO):
            t(f"large upload >= 4x Django, {name}", lu[name] >= 4 * lu[DJANGO],
              f"{lu[name] / lu[DJANGO]:.2f}x")
    su = {r["system"]: r for r in res.get("small_upload", {}).get("systems", [])}
    so = su.get(MODULE_OFF, {}).get("rps")
    if so and su.get(DAV, {}).get("rps"):
        r = so / su[DAV]["rps"]
        t("small uploads Sync Off >= 1.0x mod_dav PUT req/s", r >= 1.0, f"{r:.2f}x")
    if so and su.get(DJANGO, {}).get("rps"):
        r = so / su[DJANGO]["rps"]
        t("small uploads Sync Off >= 1.5x Django req/s", r >= 1.5, f"{r:.2f}x")
    if so and su.get(MODULE_OFF_V1, {}).get("rps"):
        r = so / su[MODULE_OFF_V1]["rps"]
        t("small uploads Sync Off, format 2 >= 0.95x format 1", r >= 0.95, f"{r:.2f}x")
    for name in (MODULE_ON, MODULE_OFF):
        p99 = su.get(name, {}).get("p99_ms")
        if p99 is not None:
            t(f"p99 < 50 ms at {res['small_upload']['connections']} connections, {name}",
              p99 < 50, f"{p99:.1f} ms")
    non = sum(r.get("non2xx") or 0 for r in su.values())
    non += sum(r.get("non2xx") or 0 for r in res.get("scaling", {}).get("rows", []))
    if su:
        t("no non-2xx answers", non == 0, f"{non}")
    formats.targets(res, t)
    return out


def fmt(v, spec):
    return "" if v is None else format(v, spec)


def print_table(rows, tgts, failures):
    head = f"{'section':<13} {'system':<40} {'value':>9} {'unit':<8} {'x limit':>7} " \
           f"{'x dav':>6} {'p50 ms':>7} {'p99 ms':>7} {'non2xx':>6} {'RSS MiB':>8}"
    print(head)
    print("-" * len(head))
    last = None
    for r in rows:
        if last and r["section"] != last:
            print()
        last = r["section"]
        print(f"{r['section']:<13} {r['system'][:40]:<40} {fmt(r['value'], '9.1f'):>9} "
              f"{r['unit']:<8} {fmt(r['ratio_to_limit'], '7.2f'):>7} "
              f"{fmt(r['ratio_to_mod_dav'], '6.2f'):>6} {fmt(r['p50_ms'], '7.2f'):>7} "
              f"{fmt(r['p99_ms'], '7.2f'):>7} {fmt(r['non2xx'], 'd'):>6} "
              f"{fmt(r['peak_rss_mib'], '8.1f'):>8}")
    print()
    for t in tgts:
        print(f"  [{'met' if t['met'] else 'NOT met':>7}] {t['target']}: {t['detail']}")
    for f in failures:
        print(f"  [FAILED ] {f}")


# ---------------------------------------------------------------- main

def parse_args(argv):
    p = argparse.ArgumentParser(prog="bench/run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="small sizes, 3 s loads, one repetition (under 2 minutes); checks only "
                        "that every system ran and answered correctly")
    p.add_argument("--json", default=os.path.join(BENCH, "results.json"),
                   help="where to write the results (default bench/results.json)")
    p.add_argument("--runs", type=int, help="repetitions of each figure (median); default 3")
    p.add_argument("--workdir", default=None, help="parent of the temporary directory")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.add_argument("--only", default="limit,large,small,scaling,memory,formats",
                   help="comma-separated parts to run (large includes download; formats: "
                        "reading back format v1 against v2); 'profile' "
                        "(not run by default) records perf profiles of one large upload and "
                        "download; 'nodes' (not run by default) small uploads on 1 and 2 "
                        "Apache nodes sharing one storage directory and Redis, and with "
                        "SecUploadRedisWaitReplicas 1, with CPU use and Redis commands and "
                        "bytes per upload; 'tus' (not run by default) a resumable upload in 8 MiB "
                        "PATCHes against a one-shot upload of the same file; 'seal' (not run by default) compares an upload's work "
                        "in memory, format 1 against 2, under taskset on 1 and 2 cores")
    a = p.parse_args(argv)
    if a.quick:
        a.runs = a.runs or 1
        a.limit_bytes = a.large_bytes = 64 * MIB
        a.wrk_seconds = a.scale_seconds = 3
        a.mem_sizes = [16 * MIB, 64 * MIB]
        a.speed_seconds = 1
        a.fmt_sizes = [MIB, 64 * MIB]
        a.fmt_rate_bytes = 64 * MIB
        a.fmt_reps = 2
        a.tus_bytes = 64 * MIB
    else:
        a.runs = a.runs or 3
        a.limit_bytes = a.large_bytes = 1024 * MIB
        a.wrk_seconds = 10
        a.scale_seconds = 5
        a.mem_sizes = [16 * MIB, 2048 * MIB]
        a.speed_seconds = 2
        a.fmt_sizes = [MIB, 1024 * MIB, 4096 * MIB]
        a.fmt_rate_bytes = 1024 * MIB
        a.fmt_reps = 5
        a.tus_bytes = 256 * MIB
    if a.runs < 1 or a.runs > 20:
        p.error("--runs must be 1..20")
    a.tus_patch = 8 * MIB
    a.conns = 16
    a.scale_conns = [1, 4, 16, 64]
    a.only = set(a.only.split(","))
    return a


def machine():
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
    except OSError:
        pass
    ver = run(["/usr/sbin/apache2", "-v"], 30).splitlines()[0].split(":", 1)[-1].strip()
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
            "openssl": run(["openssl", "version"], 30).strip(), "apache": ver,
            "load_average_at_start": os.getloadavg()}


def main(argv):
    a = parse_args(argv)
    started = time.monotonic()

    def on_term(signum, frame):
        raise KeyboardInterrupt
    # explicit, also where the caller left SIGINT ignored (a background job)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    try:
        st = Setup(a)
    except BenchError as e:
        print(f"bench/run: {e}", file=sys.stderr)
        return 1
    b = Bench(st, a)
    try:
        b.limit_exe = st.build_limit()
        st.start_all(django=a.only != {"nodes"})
        steps = [("limit", b.limit), ("large", b.large), ("small", b.small),
                 ("scaling", b.scaling), ("memory", b.memory), ("formats", b.formats),
                 ("profile", b.profile), ("nodes", b.nodes), ("tus", b.tus), ("seal", b.seal)]
        b.large_file = (None, 0, None)
        for name, fn in steps:
            if name in a.only:
                b.guard(name, fn)
    except KeyboardInterrupt:
        log("interrupted; stopping the servers")
        st.cleanup()
        st.remove_work()
        return 130
    except (BenchError, OSError, subprocess.SubprocessError) as e:
        st.fail(str(e))
    finally:
        st.cleanup()
    res = b.res
    res["meta"] = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                   "mode": "quick" if a.quick else "full", "runs": a.runs,
                   "elapsed_s": round(time.monotonic() - started, 1), "machine": machine(),
                   "units": "MB = 10^6 bytes, MiB = 2^20 bytes; figures are medians of runs"}
    rows = build_table(res)
    tgts = targets(res)
    res["table"] = rows
    res["targets"] = tgts
    res["failures"] = st.failures
    with open(a.json, "w") as f:
        json.dump(res, f, indent=2)
        f.write("\n")
    print_table(rows, tgts, st.failures)
    print(f"\nresults: {a.json} ({res['meta']['elapsed_s']:.0f} s)", flush=True)
    st.remove_work()
    if st.failures:
        print(f"{len(st.failures)} check(s) failed", file=sys.stderr)
        return 1
    return 0


# bench/formats.py uses this module's helpers and its BenchError
formats.B = sys.modules[__name__]

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
