"""Temp files of uploads cut short by a killed child (a graceful stop past
GracefulShutdownTimeout, a crash) are removed when Apache starts (SU00241),
but never while an upload may still be writing one: not at a graceful
restart, whose old children finish their requests, and not while another
server that uses the same directory runs (SU00242)."""

import os
import re
import secrets
import signal

import pytest

import secupload_harness as H
from secupload_stack import Stack

KIB = 1024
TMP_PREFIX = ".tmp-"   # SU_STORE_TMP_PREFIX (src/su_store.h)


def plant_temp(storage, fid=None):
    """A leftover like the store's: DIR/xx/.tmp-<id>, 0600, holding the
    start of an encrypted file. Returns its path."""
    fid = fid or secrets.token_hex(16)
    sub = os.path.join(storage, fid[:2])
    os.makedirs(sub, mode=0o700, exist_ok=True)
    H._chown_server_user(sub)
    path = os.path.join(sub, TMP_PREFIX + fid)
    with open(path, "wb") as f:
        f.write(H.MAGIC + secrets.token_bytes(H.HEADER_LEN - len(H.MAGIC)
                                              + 4096))
    os.chmod(path, 0o600)
    H._chown_server_user(path)
    return path


def rel_of(fid):
    return os.path.join(fid[:2], fid + ".enc")


def temp_files(storage):
    return sorted(p for p in H.storage_files(storage)
                  if os.path.basename(p).startswith(TMP_PREFIX))


def sweep_lines(apache, msgid):
    return [ln for ln in apache.log_text().splitlines() if msgid in ln]


def generations(apache):
    return apache.log_text().count("resuming normal operations")


class SlowUpload:
    """A raw upload whose body is sent in two halves, so that it is in
    flight (its temp file on disk) in between."""

    def __init__(self, port, size=256 * KIB):
        self.plain = os.urandom(size)
        self.conn = H.RawConn(port, timeout=60)
        self.conn.send(H.request_head("POST", "/api/upload/", [
            ("Content-Type", "application/octet-stream"),
            ("Content-Length", str(size)), ("Connection", "close")]))
        self.conn.send(self.plain[:size // 2])

    def finish(self):
        self.conn.send(self.plain[len(self.plain) // 2:])
        try:
            return self.conn.read_response()
        finally:
            self.conn.close()


def wait_in_flight(storage, known):
    """The temp file of an upload under way (one not in known)."""
    new = H._wait_for(lambda: [p for p in temp_files(storage)
                               if p not in known], 10)
    assert len(new) == 1, "no temp file of the upload in flight: %r" % new
    return new[0]


def test_leftover_temp_files_removed_at_start(module_so):
    s = Stack("leftover")
    storage = s.site.storage
    gone = [plant_temp(storage), plant_temp(storage)]
    # not the store's temp files: left alone
    keep_sub = os.path.dirname(gone[0])
    outside = os.path.join(s.site.root, "outside.txt")
    with open(outside, "w") as f:
        f.write("not in the storage dir\n")
    kept = [os.path.join(keep_sub, "notes.txt"),
            os.path.join(storage, TMP_PREFIX + "at-the-top")]
    for p in kept:
        with open(p, "w") as f:
            f.write("x")
    link = os.path.join(keep_sub, TMP_PREFIX + "link")
    os.symlink(outside, link)
    s.start()
    try:
        assert not [p for p in gone if os.path.exists(p)], gone
        assert all(os.path.exists(p) for p in kept), kept
        assert os.path.islink(link) and os.path.exists(outside)
        lines = sweep_lines(s.apache, "SU00241")
        assert len(lines) == 1, lines
        assert ":notice]" in lines[0], lines[0]
        assert "removed 2 temp files of uploads cut short before this " \
            "start from %s" % storage in lines[0], lines[0]
        for p in kept + [link]:
            os.unlink(p)
        plain = secrets.token_bytes(5000)
        s.check_stored(s.post_raw(plain), plain)
    finally:
        problems = s.stop()
    assert not problems, problems


def test_nothing_to_remove_logs_nothing(module_so):
    s = Stack("noleftover").start()
    try:
        assert not sweep_lines(s.apache, "SU0024"), \
            sweep_lines(s.apache, "SU0024")
    finally:
        problems = s.stop()
    assert not problems, problems


@pytest.fixture
def graceful(module_so):
    s = Stack("graceful").start()
    yield s
    problems = s.stop()
    assert not problems, problems


def test_graceful_restart_removes_no_temp_file(graceful):
    """SIGUSR1: the old generation's children finish their uploads while
    the parent configures anew; their temp files, and a leftover planted
    before, stay."""
    s = graceful
    storage = s.site.storage
    planted = plant_temp(storage)
    up = SlowUpload(s.apache.port)
    flying = wait_in_flight(storage, [os.path.relpath(planted, storage)])
    before = generations(s.apache)
    os.kill(s.apache.proc.pid, signal.SIGUSR1)
    assert H._wait_for(lambda: generations(s.apache) > before, 30), \
        s.apache.log_text()[-3000:]
    assert H._wait_for(s.apache._serving, 30)
    assert os.path.exists(planted)
    assert os.path.exists(os.path.join(storage, flying))
    # not even looked at: no removal, and no lock sought
    assert not sweep_lines(s.apache, "SU0024"), sweep_lines(s.apache, "SU0024")
    resp = up.finish()
    os.unlink(planted)
    s.check_stored(resp, up.plain)


def _second_server(tag, first):
    """Another Apache configured on first's storage dir, key and Redis."""
    site = H.Site(tag)
    lines = [
        'SecUploadStorageDir "%s"' % first.site.storage,
        'SecUploadKeyFile "%s"' % first.key1,
        "SecUploadRedisServer 127.0.0.1:%d" % first.redis.port,
        'SecUploadRedisPrefix "%s"' % first.prefix]
    # 0: first runs the module's default, and so does this one
    if first.format_version:
        lines.append("SecUploadFormatVersion %d" % first.format_version)
    body = "\n".join(lines)
    return H.Apache(site, site.write_conf(site.conf_text(body)))


def test_another_server_on_the_directory_removes_nothing(module_so):
    """A second server started on the same directory leaves the first
    one's temp files alone while the first runs (its uploads in flight
    finish), and removes the leftovers once it is the only one."""
    a = Stack("first").start()
    b = _second_server("second", a)
    try:
        storage = a.site.storage
        planted = plant_temp(storage)
        up = SlowUpload(a.apache.port)
        wait_in_flight(storage, [os.path.relpath(planted, storage)])
        b.start()
        lines = sweep_lines(b, "SU00242")
        assert len(lines) == 1 and ":notice]" in lines[0], lines
        assert "%s is in use by another running server" % storage in lines[0]
        assert not sweep_lines(b, "SU00241")
        assert os.path.exists(planted)
        resp = up.finish()
        assert resp.status == 201, resp
        assert H.decrypt_file(os.path.join(storage, rel_of(resp.json()["id"])),
                              a.keks)[0] == up.plain
        b.stop()
        a.apache.stop()
        b.start()
        lines = sweep_lines(b, "SU00241")
        assert len(lines) == 1, lines
        assert re.search(r"removed 1 temp file of uploads cut short before "
                         r"this start from %s$" % re.escape(storage), lines[0])
        assert not os.path.exists(planted)
    finally:
        b.stop()
        problems = b.take_problems()
        b.site.cleanup()
        problems += a.stop()
    assert not problems, problems
