"""Helpers of test_hostile.py: hand-made requests on a raw socket, sent while
the answer is read (a server that answers early must not dead-lock a
client that is still sending), split into separate TCP writes when the test
needs bucket edges at exact places, and a look at what the connection does
after the answer."""

import json
import socket
import threading
import time

import secupload_harness as H

UPLOAD = "/api/upload/"


class Exchange:
    """What came back: the response (None if none), whether the server
    closed the connection after it, and any bytes it sent after it."""

    def __init__(self, resp, closed, extra, elapsed):
        self.resp = resp
        self.closed = closed
        self.extra = extra
        self.elapsed = elapsed

    # expect_error() and check_stored() read these off a response
    @property
    def status(self):
        return self.resp.status

    @property
    def headers(self):
        return self.resp.headers

    @property
    def body(self):
        return self.resp.body

    def json(self):
        return json.loads(self.resp.body.decode("utf-8"))

    def __repr__(self):
        return "<Exchange %r closed=%s extra=%r>" % (self.resp, self.closed,
                                                     self.extra[:200])


def head(headers, path=UPLOAD, method="POST"):
    """A request head; headers is a list of (name, value)."""
    return H.request_head(method, path, headers)


def _sender(sock, pieces, delay, errors):
    try:
        for i, piece in enumerate(pieces):
            if i and delay:
                time.sleep(delay)
            if piece:
                sock.sendall(piece)
    except OSError as e:  # the server answered early and went away
        errors.append(e)


def _drain(conn, wait):
    """After a response: (closed, extra bytes). closed is True when the
    server sent FIN (or RST) within `wait` seconds."""
    extra = conn.buf
    conn.buf = b""
    conn.sock.settimeout(wait)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            chunk = conn.sock.recv(65536)
        except ConnectionResetError:
            return True, extra
        except socket.timeout:
            return False, extra
        if not chunk:
            return True, extra
        extra += chunk
        if len(extra) > 1 << 20:
            break
    return False, extra


def exchange(port, head_bytes, pieces=(), delay=0.0, timeout=60,
             drain=3.0, nodelay=False):
    """Send the head and then each of `pieces` as its own write (with
    `delay` seconds between them) from a second thread, read the response
    meanwhile, then see whether the server closes the connection. Returns
    an Exchange."""
    if isinstance(pieces, (bytes, bytearray)):
        pieces = [bytes(pieces)]
    conn = H.RawConn(port, timeout=timeout)
    if nodelay:
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    errors = []
    t0 = time.monotonic()
    try:
        conn.send(head_bytes)
        sender = threading.Thread(target=_sender,
                                  args=(conn.sock, list(pieces), delay,
                                        errors), daemon=True)
        sender.start()
        try:
            resp = conn.read_response()
        except EOFError:
            resp = None
        elapsed = time.monotonic() - t0
        closed, extra = _drain(conn, drain) if drain else (None, b"")
        if resp is None:
            closed = True
    finally:
        conn.close()
    sender.join(30)
    return Exchange(resp, closed, extra, elapsed)


def split_at(data, offsets):
    """data cut at the given (sorted, unique) offsets."""
    out, last = [], 0
    for off in sorted(set(o for o in offsets if 0 < o < len(data))):
        out.append(data[last:off])
        last = off
    out.append(data[last:])
    return out


def chunk_pieces(pieces):
    """Each piece as one chunk of the chunked coding, then the last chunk."""
    out = [b"%x\r\n" % len(p) + p + b"\r\n" for p in pieces if p]
    out.append(b"0\r\n\r\n")
    return out


def access_log(stack):
    with open("%s/access.log" % stack.site.logs, "rb") as f:
        return f.read().decode("latin-1")
