"""Helpers for the secupload command-line tool tests: running the binary,
key files, stored files built by an independent encoder of the on-disk
format (docs/format.md), and a private Redis on a free loopback port."""

import hashlib
import hmac
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.keywrap import (aes_key_unwrap,
                                                    aes_key_wrap)

# one free-port helper for both suites: the integration harness's
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "integration"))
from secupload_harness import free_port  # noqa: E402  pylint: disable=wrong-import-position

MAGIC = b"SECUPLD\x01"
HEADER_LEN = 104
TAG_LEN = 32
SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "runtime error:")


def cli_path():
    return os.environ.get("SECUPLOAD_CLI", "/work/main/secupload")


def key_id(kek):
    return hashlib.sha256(kek).digest()[:8]


def encrypt(kek, plaintext):
    """A stored file, version 1, exactly as docs/format.md lays it out."""
    datakey = os.urandom(64)
    iv = os.urandom(16)
    wrapped = aes_key_wrap(kek, datakey)
    assert len(wrapped) == 72
    header = MAGIC + key_id(kek) + wrapped + iv
    assert len(header) == HEADER_LEN
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    enc = Cipher(algorithms.AES(datakey[:32]), modes.CBC(iv)).encryptor()
    ct = enc.update(padded) + enc.finalize()
    tag = hmac.new(datakey[32:], header + ct, hashlib.sha256).digest()
    return header + ct + tag


def decrypt(kek, blob):
    """Independent reader, to check what the tool wrote."""
    header, ct, tag = blob[:HEADER_LEN], blob[HEADER_LEN:-TAG_LEN], blob[-TAG_LEN:]
    assert header[:8] == MAGIC
    assert header[8:16] == key_id(kek)
    datakey = aes_key_unwrap(kek, header[16:88])
    want = hmac.new(datakey[32:], header + ct, hashlib.sha256).digest()
    assert hmac.compare_digest(want, tag)
    dec = Cipher(algorithms.AES(datakey[:32]), modes.CBC(header[88:104])).decryptor()
    padded = dec.update(ct) + dec.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return unpadder.update(padded) + unpadder.finalize()


def new_id():
    return uuid.uuid4().hex


class Store:
    """A storage directory laid out as DIR/xx/<id>.enc."""

    def __init__(self, root):
        self.root = str(root)
        os.makedirs(self.root, exist_ok=True)

    def path(self, fid):
        return os.path.join(self.root, fid[:2], fid + ".enc")

    def put(self, kek, plaintext, fid=None):
        fid = fid or new_id()
        sub = os.path.join(self.root, fid[:2])
        os.makedirs(sub, mode=0o700, exist_ok=True)
        p = self.path(fid)
        with open(p, "wb") as f:
            f.write(encrypt(kek, plaintext))
        os.chmod(p, 0o600)
        return fid

    def read(self, fid):
        with open(self.path(fid), "rb") as f:
            return f.read()

    def hashes(self):
        out = {}
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                p = os.path.join(dirpath, name)
                with open(p, "rb") as f:
                    out[p] = hashlib.sha256(f.read()).hexdigest()
        return out


class Keys:
    """Key files: raw bytes and the path of a 0400 file holding them."""

    def __init__(self, root):
        self.root = str(root)
        os.makedirs(self.root, exist_ok=True)
        self.n = 0

    def make(self, raw=None, mode=0o400):
        raw = raw if raw is not None else os.urandom(32)
        self.n += 1
        p = os.path.join(self.root, "k%d.key" % self.n)
        with open(p, "w") as f:
            f.write(raw.hex() + "\n")
        os.chmod(p, mode)
        return raw, p


class Result:
    def __init__(self, cp):
        self.rc = cp.returncode
        self.out = cp.stdout
        self.err = cp.stderr.decode("utf-8", "replace")

    @property
    def text(self):
        return self.out.decode("utf-8", "replace")

    @property
    def lines(self):
        return self.text.splitlines()

    def __repr__(self):
        return "rc=%s stdout=%r stderr=%r" % (self.rc, self.out[:2000], self.err[:2000])


def run(*args, env_extra=None, timeout=120):
    env = dict(os.environ)
    if env_extra:
        env.update(env_extra)
    cp = subprocess.run([cli_path()] + [str(a) for a in args],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        env=env, timeout=timeout, check=False)
    res = Result(cp)
    # A sanitizer build must not hide a report behind an expected exit code.
    for marker in SANITIZER_MARKERS:
        assert marker not in res.err, res
    return res


class RedisServer:
    def __init__(self, workdir):
        self.workdir = str(workdir)
        self.port = free_port()
        self.proc = None

    def start(self):
        exe = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--dir", self.workdir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("redis-server exited with %s" % self.proc.returncode)
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as c:
                    c.sendall(b"PING\r\n")
                    if c.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("redis-server did not come up on port %d" % self.port)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    @property
    def addr(self):
        return "127.0.0.1:%d" % self.port

    def client(self, db=0):
        import redis
        return redis.Redis(host="127.0.0.1", port=self.port, db=db,
                           socket_timeout=5)


def put_meta(client, prefix, fid, kek, size=0, store=None, plain=None):
    """A metadata hash as an upload writes it. With store, the IV of the
    stored file (if there is one) is recorded, as the module does; without,
    the hash is one from before IVs were recorded. With plain, size and
    sha256 are the plaintext's."""
    sha = "0" * 64
    if plain is not None:
        size, sha = len(plain), hashlib.sha256(plain).hexdigest()
    fields = {
        "id": fid, "name": "f.bin", "size": str(size), "sha256": sha,
        "content_type": "application/octet-stream", "key_id": key_id(kek).hex(),
        "path": "%s/%s.enc" % (fid[:2], fid), "created": "2024-01-01T00:00:00Z",
        "client_ip": "127.0.0.1", "user": "", "request_id": "r1"}
    if store is not None and os.path.exists(store.path(fid)):
        fields["iv"] = file_iv(store.read(fid))
    client.hset(prefix + "file:" + fid, mapping=fields)


def file_iv(blob):
    """What the metadata records to bind a stored file to its id: a v1
    file's IV, a v2 file's nonce."""
    if blob[:8] == b"SECUPLD\x02":
        return blob[92:108].hex()
    return blob[88:HEADER_LEN].hex()
