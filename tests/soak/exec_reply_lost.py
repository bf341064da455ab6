#!/usr/bin/python3
"""Deterministic reproduction of the case the soak finds now and then: Redis
runs the upload's MULTI/EXEC, then the connection drops before the reply
reaches the module.

A small TCP proxy sits between Apache and Redis. Armed, it forwards the first
pipeline that carries EVAL and EXEC (the store of an upload), lets Redis run
it, then closes the module's connection without passing the reply on. The
contract allows two outcomes: 201 with file and metadata, or a non-201 with
neither. Exit 0 for either, 1 if storage and Redis disagree (metadata
without a file, or a file without metadata), 2 if the servers do not start.

    /usr/bin/python3 tests/soak/exec_reply_lost.py [MODE]

MODE:
  immediate  (default) Redis stays reachable after the lost reply
  deferred   Redis is unreachable for 3 s (longer than the 2 s timeout)
             after the lost reply; then a few more requests are made
  restart    as deferred, but Apache is gracefully restarted before any
             other request reaches Redis
  delete     the same for a DELETE of a stored file: 204 with file and
             metadata gone, or an error with both still there
"""

import os
import secrets
import signal
import socket
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import requests  # noqa: E402

import secupload_harness as H  # noqa: E402
from secupload_stack import Stack  # noqa: E402


class DropAfterExec:
    """Proxy 127.0.0.1:listen_port -> 127.0.0.1:redis_port."""

    def __init__(self, listen_port, redis_port):
        self.redis_port = redis_port
        self.armed = threading.Event()
        self.fired = threading.Event()
        self.blackout = 0.0       # seconds of refusal after firing
        self.delay = 0.0          # > 0: hold the write this long, then pass
                                  # it and its reply on (a late write)
        self.refuse_until = 0.0
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", listen_port))
        self.lsock.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            if time.monotonic() < self.refuse_until:
                c.close()             # Redis "down"
                continue
            s = socket.create_connection(("127.0.0.1", self.redis_port), 5)
            state = {"drop": False}
            threading.Thread(target=self._up, args=(c, s, state),
                             daemon=True).start()
            threading.Thread(target=self._down, args=(s, c, state),
                             daemon=True).start()

    def _up(self, c, s, state):
        """module -> Redis"""
        try:
            while True:
                data = c.recv(65536)
                if not data:
                    break
                if self.armed.is_set() and b"EVAL" in data and \
                        b"EXEC" in data and self.delay > 0:
                    self.armed.clear()
                    time.sleep(self.delay)
                    self.fired.set()
                    s.sendall(data)
                    continue
                if self.armed.is_set() and b"EVAL" in data and \
                        b"EXEC" in data:
                    self.armed.clear()
                    state["drop"] = True     # Redis's answer goes nowhere
                    s.sendall(data)
                    time.sleep(0.3)           # Redis has run it by now
                    self.refuse_until = time.monotonic() + self.blackout
                    self.fired.set()
                    c.close()
                    s.close()
                    return
                s.sendall(data)
        except OSError:
            pass
        for x in (c, s):
            try:
                x.close()
            except OSError:
                pass

    def _down(self, s, c, state):
        """Redis -> module"""
        try:
            while True:
                data = s.recv(65536)
                if not data:
                    break
                if not state["drop"]:
                    c.sendall(data)
        except OSError:
            pass

    def close(self):
        self.lsock.close()


def lost_delete(stack, proxy, fid):
    proxy.armed.set()
    r = requests.delete(stack.url("/api/files/" + fid), timeout=60)
    assert proxy.fired.is_set(), "the proxy never saw the delete"
    time.sleep(0.5)
    has_file = os.path.exists(os.path.join(stack.site.storage, fid[:2],
                                           fid + ".enc"))
    has_meta = bool(stack.rv.meta(fid))
    print("answer: %d %s" % (r.status_code, r.text[:200]))
    print("file there: %s, metadata there: %s" % (has_file, has_meta))
    if (r.status_code == 204 and not has_file and not has_meta) or \
            (r.status_code != 204 and has_file and has_meta):
        print("consistent")
        return 0
    print("INCONSISTENT")
    return 1


def main(mode):
    if mode not in ("immediate", "deferred", "restart", "delete"):
        print(__doc__)
        return 2
    stack = Stack("execlost")
    proxy_port = stack.redis.port          # what Apache's config names
    stack.redis = H.RedisServer(stack.site.root)  # the real one, elsewhere
    proxy = None
    try:
        stack.redis.start()
        proxy = DropAfterExec(proxy_port, stack.redis.port)
        stack.apache.start()
    except Exception as e:
        print("cannot start: %s" % e)
        stack.stop()
        return 2
    try:
        warm = secrets.token_bytes(1000)
        r = stack.post(warm, {"Content-Type": "application/octet-stream"})
        assert r.status_code == 201, r.text
        files_before = set(stack.files())
        keys_before = stack.rv.file_keys()
        if mode == "delete":
            return lost_delete(stack, proxy, r.json()["id"])
        if mode != "immediate":
            proxy.blackout = 3.0
        proxy.armed.set()
        data = secrets.token_bytes(5000)
        r = requests.post(stack.url(), data=data, timeout=60, headers={
            "Content-Type": "application/octet-stream"})
        assert proxy.fired.is_set(), "the proxy never saw the store"
        time.sleep(max(0.0, proxy.refuse_until - time.monotonic()) + 0.5)
        if mode == "restart":
            apid = stack.apache.proc.pid
            os.kill(apid, signal.SIGUSR1)
            time.sleep(3.0)
            print("graceful restart of pid %d done" % apid)
        later = set()
        if mode != "immediate":
            # requests that reach Redis again, in every child
            for _ in range(8):
                d = secrets.token_bytes(100)
                r2 = requests.post(stack.url(), data=d, timeout=60, headers={
                    "Content-Type": "application/octet-stream",
                    "Connection": "close"})
                if r2.status_code == 201:
                    later.add(r2.json()["id"])
            time.sleep(0.5)
        new_files = sorted(rel for rel in set(stack.files()) - files_before
                           if os.path.basename(rel)[:32] not in later)
        new_keys = sorted(k for k in stack.rv.file_keys() - keys_before
                          if k[-32:] not in later)
        print("answer: %d %s" % (r.status_code, r.text[:200]))
        print("new files: %r" % new_files)
        print("new metadata: %r" % new_keys)
        ok = (r.status_code == 201 and len(new_files) == 1
              and len(new_keys) == 1) or \
            (r.status_code != 201 and not new_files and not new_keys)
        if ok:
            print("consistent")
            return 0
        print("INCONSISTENT: %s" % (
            "metadata without a file" if new_keys and not new_files else
            "a file without metadata" if new_files and not new_keys else
            "answer and storage disagree"))
        return 1
    finally:
        if proxy:
            proxy.close()
        stack.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "immediate"))
