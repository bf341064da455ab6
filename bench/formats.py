"""bench/run --only formats: reading files back, format v1 against v2.

The same plaintexts are uploaded once through a server that writes format
v1 (a virtual host with SecUploadFormatVersion 1) and once through one that
writes v2 (the default), into the same storage, and are then read back by
the same server. Measured side by side in one run:

* time to the first byte of the body for each size and format (a raw socket:
  request sent, clock stopped at the first body byte, connection closed);
* a 1 MiB range from the middle of the largest file against a whole 1 MiB
  file's download (v2);
* the download rate of the large file: v1, v2 and Apache's own GET of the
  plaintext, with the CPU time the server's processes spent per byte
  (utime + stime of its children) against the floor the cryptography sets
  (openssl speed: HMAC-SHA256 plus AES-256-CBC decryption, one core);
* one large upload at a time, v1 against v2, with every thread of the
  server held to one core and then to two (taskset), the client free.
"""
import json
import os
import socket
import time
import urllib.parse

# bench.py: set by it when it imports this file
B = None


def first_byte(url, timeout=120.0):
    """Seconds from sending a GET to its first body byte."""
    u = urllib.parse.urlsplit(url)
    s = socket.create_connection((u.hostname, u.port), timeout=timeout)
    try:
        req = f"GET {u.path} HTTP/1.1\r\nHost: {u.hostname}\r\nConnection: close\r\n\r\n"
        t0 = time.monotonic()
        s.sendall(req.encode())
        buf = b""
        while True:
            b = s.recv(65536)
            if not b:
                raise B.BenchError(f"GET {url}: closed before the body")
            buf += b
            head, sep, body = buf.partition(b"\r\n\r\n")
            if sep and body:
                t = time.monotonic() - t0
                if not head.startswith(b"HTTP/1.1 200"):
                    raise B.BenchError(f"GET {url}: {head[:40]!r}")
                return t
    finally:
        s.close()


def cpu_ticks(pids):
    """utime + stime of the processes, in clock ticks."""
    n = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
            n += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return n


def speed(args, seconds):
    out = B.run(["openssl", "speed", "-seconds", str(seconds), "-bytes", "65536", *args], 120)
    return float(out.strip().splitlines()[-1].split()[-1].rstrip("k")) / 1000


class Formats:
    def __init__(self, bench):
        self.b = bench
        self.st = bench.st
        self.a = bench.a

    def upload(self, url, path, size, sha):
        code, secs, _, _, body = B.curl(["-F", f"file=@{path};type=application/octet-stream",
                                         url + "/api/upload-nosync/"], max(120, size / 5e6))
        js = json.loads(body) if body.startswith("{") else {}
        if code != 201 or js.get("sha256") != sha:
            raise B.BenchError(f"upload of {size} bytes to {url}: {code} {body[:200]}")
        return js["id"]

    def stored_version(self, ident):
        with open(os.path.join(self.st.apache["storage"], ident[:2], ident + ".enc"), "rb") as f:
            return f.read(8)[7]

    def files(self):
        """{size: (path, sha, {version: id})} for every size."""
        out = {}
        for size in self.a.fmt_sizes:
            path = self.st.path(f"fmt-{size}.bin")
            sha = B.make_file(path, size)
            ids = {}
            for ver, url in (("v1", self.st.apache["url_v1"]), ("v2", self.st.apache["url"])):
                ids[ver] = self.upload(url, path, size, sha)
                if self.stored_version(ids[ver]) != int(ver[1]):
                    raise B.BenchError(f"{ver} upload stored as another version")
            out[size] = (path, sha, ids)
        return out

    def ttfb(self, files):
        rows = []
        for size, (_, _, ids) in sorted(files.items()):
            for ver in ("v1", "v2"):
                url = f"{self.st.apache['url']}/api/files/{ids[ver]}"
                t = [first_byte(url) for _ in range(self.a.fmt_reps)]
                rows.append({"bytes": size, "format": ver, "first_byte_ms": B.median(t) * 1e3,
                             "runs_ms": [x * 1e3 for x in t]})
                B.log(f"first byte, {size >> 20} MiB {ver}: {B.median(t) * 1e3:.1f} ms")
        return rows

    def one_range(self, url, path, start, length):
        """Seconds for a Range GET; the bytes are checked against the plaintext."""
        out = self.st.path("range.out")
        code, secs, _, down, _ = B.curl(["-r", f"{start}-{start + length - 1}", "-o", out, url],
                                        120)
        with open(path, "rb") as f:
            f.seek(start)
            want = f.read(length)
        with open(out, "rb") as f:
            got = f.read()
        if code != 206 or got != want:
            raise B.BenchError(f"range of {url}: {code}, {down} bytes, content differs")
        return secs

    def ranges(self, files):
        big = max(files)
        small = min(files)
        path, _, ids = files[big]
        url = f"{self.st.apache['url']}/api/files/{ids['v2']}"
        mid = (big // 2) // B.MIB * B.MIB + 12345
        r = [self.one_range(url, path, mid, small) for _ in range(self.a.fmt_reps)]
        spath, ssha, sids = files[small]
        surl = f"{self.st.apache['url']}/api/files/{sids['v2']}"
        w = []
        for _ in range(self.a.fmt_reps):
            code, secs, _, down, _ = B.curl(["-o", "/dev/null", surl], 120)
            if code != 200 or down != small:
                raise B.BenchError(f"GET {surl}: {code}")
            w.append(secs)
        B.log(f"1 MiB range of {big >> 20} MiB: {B.median(r) * 1e3:.1f} ms; "
              f"whole 1 MiB file: {B.median(w) * 1e3:.1f} ms")
        return {"file_bytes": big, "range_bytes": small, "range_ms": B.median(r) * 1e3,
                "whole_small_file_ms": B.median(w) * 1e3,
                "ratio": B.median(r) / B.median(w) if B.median(w) else None}

    def rate(self, url, size):
        pids = self.st.serving_pids(B.DAV)
        B.quiet_disk()
        c0 = cpu_ticks(pids)
        mb_s, first = B.download(url, size, max(120, size / 5e6))
        ticks = cpu_ticks(pids) - c0
        hz = os.sysconf("SC_CLK_TCK")
        return mb_s, first, ticks / hz * 1e9 / size

    def rates(self, files):
        size = self.a.fmt_rate_bytes
        path, _, ids = files[size]
        plain = os.path.join(self.st.apache["htdocs"], "dav", "fmt-plain.bin")
        os.link(path, plain) if os.stat(path).st_dev == os.stat(os.path.dirname(plain)).st_dev \
            else B.shutil.copy(path, plain)
        os.chmod(plain, 0o644)
        targets = (("v1", f"{self.st.apache['url']}/api/files/{ids['v1']}"),
                   ("v2", f"{self.st.apache['url']}/api/files/{ids['v2']}"),
                   ("plain", f"{self.st.apache['url']}/dav/fmt-plain.bin"))
        runs = {k: [] for k, _ in targets}
        for _ in range(self.a.runs):
            for k, url in targets:
                runs[k].append(self.rate(url, size))
        hmac = speed(["-hmac", "sha256"], self.a.speed_seconds)
        dec = speed(["-decrypt", "-evp", "aes-256-cbc"], self.a.speed_seconds)
        floor = 1e3 / hmac + 1e3 / dec  # ns per byte, one core
        rows = []
        for k, _ in targets:
            rows.append({"what": k, "mb_s": B.median([r[0] for r in runs[k]]),
                         "first_byte_s": B.median([r[1] for r in runs[k]]),
                         "cpu_ns_per_byte": B.median([r[2] for r in runs[k]]),
                         "runs": runs[k]})
            B.log(f"download {k}: {rows[-1]['mb_s']:.0f} MB/s, "
                  f"{rows[-1]['cpu_ns_per_byte']:.2f} ns CPU per byte")
        return {"bytes": size, "rows": rows, "floor_ns_per_byte": floor,
                "openssl_hmac_sha256_mb_s": hmac, "openssl_aes_256_cbc_decrypt_mb_s": dec}

    def pin(self, cores):
        """Every thread of the server's processes on these cores."""
        for pid in [self.st.apache["proc"].pid] + self.st.serving_pids(B.DAV):
            B.run(["taskset", "-a", "-p", "-c", cores, str(pid)], 30)

    def upload_scaling(self, files):
        size = self.a.fmt_rate_bytes
        path, sha, _ = files[size]
        rows = []
        try:
            for cores in ("0", "0,1"):
                self.pin(cores)
                for ver, url in (("v1", self.st.apache["url_v1"]),
                                 ("v2", self.st.apache["url"])):
                    runs = []
                    for _ in range(self.a.runs):
                        B.quiet_disk()
                        t0 = time.monotonic()
                        ident = self.upload(url, path, size, sha)
                        runs.append(size / (time.monotonic() - t0) / 1e6)
                        os.unlink(os.path.join(self.st.apache["storage"], ident[:2],
                                               ident + ".enc"))
                    rows.append({"cores": cores, "format": ver, "mb_s": B.median(runs),
                                 "runs": runs})
                    B.log(f"upload {ver} on cores {cores}: {B.median(runs):.0f} MB/s")
        finally:
            self.pin(",".join(str(c) for c in sorted(os.sched_getaffinity(0))))
        return {"bytes": size, "rows": rows}

    def run(self):
        files = self.files()
        res = {"ttfb": self.ttfb(files), "range": self.ranges(files),
               "download": self.rates(files), "upload": self.upload_scaling(files)}
        for path, _, _ in files.values():
            os.unlink(path)
        return res


def table_rows(res, add):
    f = res.get("formats")
    if not f:
        return
    for r in f.get("ttfb", []):
        add("first byte", f"{r['bytes'] >> 20} MiB, format {r['format']}", r["first_byte_ms"],
            "ms")
    rg = f.get("range")
    if rg:
        add("range", f"1 MiB range of {rg['file_bytes'] >> 20} MiB (v2)", rg["range_ms"], "ms")
        add("range", "whole 1 MiB file (v2)", rg["whole_small_file_ms"], "ms")
    dl = f.get("download")
    if dl:
        plain = next((r["mb_s"] for r in dl["rows"] if r["what"] == "plain"), None)
        for r in dl["rows"]:
            add("format dl", f"{r['what']} {dl['bytes'] >> 20} MiB", r["mb_s"], "MB/s", None,
                B.ratio(r["mb_s"], plain))
            add("format dl", f"  CPU per byte, {r['what']}", r["cpu_ns_per_byte"], "ns/B",
                B.ratio(r["cpu_ns_per_byte"], dl["floor_ns_per_byte"]))
        add("format dl", "  floor: HMAC + AES-CBC decrypt", dl["floor_ns_per_byte"], "ns/B", 1.0)
    up = f.get("upload")
    if up:
        for r in up["rows"]:
            add("format ul", f"{r['format']} {up['bytes'] >> 20} MiB, server on cores {r['cores']}",
                r["mb_s"], "MB/s")


def targets(res, t):
    f = res.get("formats")
    if not f:
        return
    tt = {(r["bytes"], r["format"]): r["first_byte_ms"] for r in f.get("ttfb", [])}
    v2 = [v for (size, ver), v in tt.items() if ver == "v2"]
    if v2:
        t("v2 first byte under 20 ms at every size", max(v2) < 20,
          ", ".join(f"{v:.1f}" for v in v2) + " ms")
        t("v2 first byte within a few ms across sizes", max(v2) - min(v2) < 5,
          f"spread {max(v2) - min(v2):.1f} ms")
    rg = f.get("range")
    if rg and rg.get("ratio"):
        t("1 MiB range of the largest file costs about a 1 MiB file's download",
          rg["ratio"] < 2.0, f"{rg['ratio']:.2f}x")
    dl = f.get("download")
    if dl:
        r = {x["what"]: x["mb_s"] for x in dl["rows"]}
        if r.get("v1") and r.get("v2"):
            t("large download v2 >= 1.5x v1", r["v2"] >= 1.5 * r["v1"],
              f"{r['v2'] / r['v1']:.2f}x")
    up = f.get("upload")
    if up:
        u = {(r["cores"], r["format"]): r["mb_s"] for r in up["rows"]}
        if u.get(("0,1", "v1")) and u.get(("0,1", "v2")):
            q = u[("0,1", "v2")] / u[("0,1", "v1")]
            t("one v2 upload on 2 cores not slower than v1", q >= 0.95, f"{q:.2f}x")
