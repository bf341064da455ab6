"""The secupload command-line tool: every subcommand, success and failure."""

import os
import re
import shutil
import stat
import subprocess
import time

import pytest

from cli_helpers import (HEADER_LEN, RedisServer, Store, decrypt, encrypt,
                         file_iv, free_port, key_id, new_id, put_meta, run)

SIZES = [0, 1, 15, 16, 17, 65535, 65537, 1024 * 1024]


def mode_of(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def no_key_material(res, *raws):
    for raw in raws:
        assert raw.hex() not in res.err and raw.hex() not in res.text
        assert raw.hex().upper() not in res.err


# ---------------------------------------------------------------- general

def test_help_and_version():
    r = run("--help")
    assert r.rc == 0, r
    for cmd in ("keygen", "decrypt", "verify", "rewrap", "fsck"):
        assert cmd in r.text
    assert "Exit status" in r.text and "3  environment error" in r.text
    r = run("--version")
    assert r.rc == 0 and r.text.startswith("secupload "), r


@pytest.mark.parametrize("cmd", ["keygen", "decrypt", "verify", "rewrap", "fsck"])
def test_subcommand_help(cmd):
    r = run(cmd, "--help")
    assert r.rc == 0, r
    assert r.text.startswith("Usage: secupload " + cmd)
    assert "Exit status" in r.text


def test_usage_errors():
    assert run().rc == 2
    r = run("frobnicate")
    assert r.rc == 2 and r.err.startswith("secupload: "), r
    r = run("decrypt", "--no-such-option")
    assert r.rc == 2 and r.err.startswith("secupload: "), r
    assert run("decrypt", "x.enc").rc == 2            # no --key
    assert run("verify", "--key", "k").rc == 2          # no FILE
    assert run("rewrap", "--storage", "/tmp").rc == 2   # no --from/--to
    assert run("fsck").rc == 2                          # no --storage
    assert run("fsck", "--storage", "/tmp", "--redis", "host:99999").rc == 2
    assert run("fsck", "--storage", "/tmp", "--db", "-1").rc == 2
    assert run("keygen").rc == 2
    assert run("keygen", "a", "b").rc == 2


def test_numbers_are_digits_only():
    """--db and --timeout go through the same number parser as the
    directives: digits only, no sign, blank or unit, within range."""
    for opt, bad in [("--db", "+1"), ("--db", " 1"), ("--db", "1 "),
                     ("--db", "0x1"), ("--timeout", "+500"),
                     ("--timeout", " 500"), ("--timeout", "500ms"),
                     ("--timeout", "0"), ("--timeout", "600001")]:
        r = run("fsck", "--storage", "/tmp", opt, bad)
        assert r.rc == 2 and opt in r.err, (opt, bad, r)


# ---------------------------------------------------------------- keygen

def test_keygen_creates_0400_key_and_prints_id(tmp_path):
    p = tmp_path / "new.key"
    r = run("keygen", p)
    assert r.rc == 0, r
    assert mode_of(p) == 0o400
    text = p.read_text()
    assert re.fullmatch(r"[0-9a-f]{64}\n", text), text
    raw = bytes.fromhex(text.strip())
    assert r.text == key_id(raw).hex() + "\n"
    no_key_material(r, raw)


def test_keygen_keys_differ(tmp_path):
    a, b = tmp_path / "a.key", tmp_path / "b.key"
    assert run("keygen", a).rc == 0 and run("keygen", b).rc == 0
    assert a.read_text() != b.read_text()


def test_keygen_refuses_overwrite(tmp_path):
    p = tmp_path / "k.key"
    p.write_text("precious\n")
    os.chmod(p, 0o600)
    r = run("keygen", p)
    assert r.rc == 1, r
    assert r.err.startswith("secupload: ") and "exists" in r.err
    assert r.out == b""
    assert p.read_text() == "precious\n" and mode_of(p) == 0o600


def test_keygen_refuses_symlink(tmp_path):
    target = tmp_path / "target"
    link = tmp_path / "link.key"
    link.symlink_to(target)
    r = run("keygen", link)
    assert r.rc == 1, r
    assert not target.exists()


def test_keygen_unwritable_place_is_env_error(tmp_path):
    r = run("keygen", tmp_path / "no" / "such" / "dir" / "k.key")
    assert r.rc == 3, r
    assert r.err.startswith("secupload: ")


# ---------------------------------------------------------------- decrypt

@pytest.mark.parametrize("size", SIZES)
def test_decrypt_exact_bytes(keys, store, size):
    raw, kp = keys.make()
    data = os.urandom(size)
    fid = store.put(raw, data)
    r = run("decrypt", store.path(fid), "--key", kp)
    assert r.rc == 0, r
    assert r.out == data
    assert r.err == ""


def test_decrypt_to_output_file(keys, store, tmp_path):
    raw, kp = keys.make()
    data = os.urandom(70000)
    fid = store.put(raw, data)
    out = tmp_path / "plain.out"
    r = run("decrypt", store.path(fid), "-k", kp, "-o", out)
    assert r.rc == 0, r
    assert r.out == b""
    assert out.read_bytes() == data
    assert mode_of(out) == 0o600


def test_decrypt_output_never_overwritten(keys, store, tmp_path):
    raw, kp = keys.make()
    fid = store.put(raw, b"secret")
    out = tmp_path / "exists"
    out.write_bytes(b"keep me")
    r = run("decrypt", store.path(fid), "--key", kp, "--output", out)
    assert r.rc == 1, r
    assert out.read_bytes() == b"keep me"


def test_decrypt_second_key_matches(keys, store):
    other, kp_other = keys.make()
    raw, kp = keys.make()
    data = os.urandom(5000)
    fid = store.put(raw, data)
    r = run("decrypt", store.path(fid), "--key", kp_other, "--key", kp)
    assert r.rc == 0, r
    assert r.out == data


def test_decrypt_wrong_key_writes_nothing(keys, store, tmp_path):
    raw, _ = keys.make()
    wrong, kp_wrong = keys.make()
    fid = store.put(raw, os.urandom(3000))
    r = run("decrypt", store.path(fid), "--key", kp_wrong)
    assert r.rc == 1, r
    assert r.out == b""
    assert r.err.startswith("secupload: ") and "no key" in r.err
    no_key_material(r, raw, wrong)
    out = tmp_path / "o"
    r = run("decrypt", store.path(fid), "--key", kp_wrong, "-o", out)
    assert r.rc == 1, r
    assert not out.exists()


def test_decrypt_same_key_id_wrong_key_writes_nothing(keys, store):
    """A header whose key id matches but whose wrapped key does not open."""
    raw, kp = keys.make()
    other = os.urandom(32)
    blob = bytearray(encrypt(other, b"x" * 100))
    blob[8:16] = key_id(raw)
    fid = new_id()
    os.makedirs(os.path.dirname(store.path(fid)), exist_ok=True)
    with open(store.path(fid), "wb") as f:
        f.write(blob)
    r = run("decrypt", store.path(fid), "--key", kp)
    assert r.rc == 1 and r.out == b"", r


# the first, a middle and the last byte of the wrapped data key
@pytest.mark.parametrize("off", [16, 56, 87])
def test_corrupt_wrapped_key_under_matching_key_id(keys, store, tmp_path, off):
    """The key id names a configured key (ids are public) but the wrapped
    data key is corrupt: its unwrap fails. verify and decrypt report an
    integrity failure with exit 1, write nothing, and (in the sanitizer
    build) show no memory error: the failed unwrap's wipe once ran 8 bytes
    past the data key's stack buffer. rewrap leaves the file as it was."""
    raw, kp = keys.make()
    _, kp_new = keys.make()
    fid = store.put(raw, b"secret plaintext " * 100)
    p = store.path(fid)
    blob = bytearray(store.read(fid))
    blob[off] ^= 0x01
    with open(p, "wb") as f:
        f.write(blob)
    reason = "integrity check failed (modified file or wrong key)"

    r = run("verify", p, "--key", kp)
    assert r.rc == 1, r
    assert r.lines == ["FAILED %s: %s" % (p, reason)], r

    r = run("decrypt", p, "--key", kp)
    assert r.rc == 1, r
    assert r.out == b""
    assert r.err == "secupload: %s: %s\n" % (p, reason), r
    out = tmp_path / "o"
    r = run("decrypt", p, "--key", kp, "-o", out)
    assert r.rc == 1 and not out.exists(), r

    r = run("rewrap", "--storage", store.root, "--from", kp, "--to", kp_new)
    assert r.rc == 1, r
    assert "FAILED %s: %s" % (fid, reason) in r.lines, r
    assert store.read(fid) == bytes(blob)
    assert temp_files(store.root) == []
    no_key_material(r, raw)


# offsets: magic, key id, wrapped key, IV, first ciphertext byte, last
# ciphertext byte, tag
FLIPS = [0, 7, 9, 20, 90, HEADER_LEN, -33, -1]


@pytest.mark.parametrize("off", FLIPS)
def test_decrypt_flipped_byte_writes_nothing(keys, store, tmp_path, off):
    raw, kp = keys.make()
    fid = store.put(raw, os.urandom(100000))
    p = store.path(fid)
    blob = bytearray(store.read(fid))
    blob[off] ^= 0x01
    with open(p, "wb") as f:
        f.write(blob)
    r = run("decrypt", p, "--key", kp)
    assert r.rc == 1, r
    assert r.out == b""
    assert r.err.startswith("secupload: ")
    out = tmp_path / "o"
    r = run("decrypt", p, "--key", kp, "-o", out)
    assert r.rc == 1 and not out.exists(), r


@pytest.mark.parametrize("cut", [1, 16, 32, 48])
def test_decrypt_truncated_writes_nothing(keys, store, cut):
    raw, kp = keys.make()
    fid = store.put(raw, os.urandom(4096))
    p = store.path(fid)
    blob = store.read(fid)
    with open(p, "wb") as f:
        f.write(blob[:-cut])
    r = run("decrypt", p, "--key", kp)
    assert r.rc == 1, r
    assert r.out == b""


def test_decrypt_tiny_and_missing_files(keys, tmp_path):
    _, kp = keys.make()
    tiny = tmp_path / "tiny.enc"
    tiny.write_bytes(b"SECUPLD\x01")
    r = run("decrypt", tiny, "--key", kp)
    assert r.rc == 1 and r.out == b"", r
    r = run("decrypt", tmp_path / "absent.enc", "--key", kp)
    assert r.rc == 1 and r.out == b"" and "no such file" in r.err, r


def test_decrypt_key_file_problems_are_env_errors(keys, store, tmp_path):
    raw, kp = keys.make(mode=0o644)
    fid = store.put(raw, b"data")
    r = run("decrypt", store.path(fid), "--key", kp)
    assert r.rc == 3, r
    assert kp in r.err and r.out == b""
    no_key_material(r, raw)
    r = run("decrypt", store.path(fid), "--key", tmp_path / "nokey")
    assert r.rc == 3, r
    bad = tmp_path / "bad.key"
    bad.write_text("zz" * 32 + "\n")
    os.chmod(bad, 0o400)
    r = run("decrypt", store.path(fid), "--key", bad)
    assert r.rc == 3, r


# ---------------------------------------------------------------- verify

def test_verify_ok_lines(keys, store):
    raw, kp = keys.make()
    a = store.put(raw, os.urandom(17))
    b = store.put(raw, b"")
    r = run("verify", store.path(a), store.path(b), "--key", kp)
    assert r.rc == 0, r
    kid = key_id(raw).hex()
    assert r.lines == ["OK %s 17 key %s" % (store.path(a), kid),
                       "OK %s 0 key %s" % (store.path(b), kid)]


def test_verify_reports_each_failure(keys, store, tmp_path):
    raw, kp = keys.make()
    other, kp2 = keys.make()
    good = store.put(raw, os.urandom(1000))
    newer = store.put(other, os.urandom(33))
    bad = store.put(raw, os.urandom(1000))
    blob = bytearray(store.read(bad))
    blob[200] ^= 0x80
    with open(store.path(bad), "wb") as f:
        f.write(blob)
    absent = tmp_path / "absent.enc"
    r = run("verify", store.path(good), store.path(newer), store.path(bad),
            absent, "--key", kp)
    assert r.rc == 1, r
    assert r.lines[0] == "OK %s 1000 key %s" % (store.path(good), key_id(raw).hex())
    assert r.lines[1] == "FAILED %s: no key given for key id %s" % (
        store.path(newer), key_id(other).hex())
    assert r.lines[2].startswith("FAILED %s: integrity check failed" % store.path(bad))
    assert r.lines[3] == "FAILED %s: no such file" % absent
    # with both keys, the second file verifies under the other key
    r = run("verify", store.path(newer), "--key", kp, "--key", kp2)
    assert r.rc == 0 and r.lines == ["OK %s 33 key %s" % (
        store.path(newer), key_id(other).hex())], r


def test_verify_does_not_print_plaintext(keys, store):
    raw, kp = keys.make()
    fid = store.put(raw, b"TOPSECRET-PLAINTEXT")
    r = run("verify", store.path(fid), "--key", kp)
    assert r.rc == 0 and b"TOPSECRET" not in r.out + r.err.encode(), r
    assert r.lines == ["OK %s 19 key %s" % (store.path(fid), key_id(raw).hex())]


# ---------------------------------------------------------------- rewrap

def under_key(store, fid, raw):
    return store.read(fid)[8:16] == key_id(raw)


def temp_files(root):
    found = []
    for dirpath, _dirs, files in os.walk(root):
        found += [os.path.join(dirpath, f) for f in files
                  if f.endswith(".rewrap.tmp") or f.startswith(".tmp-")]
    return found


def test_rewrap_all_files(keys, store):
    old, kp_old = keys.make()
    new, kp_new = keys.make()
    data = {}
    for size in (0, 1, 16, 1000, 70000):
        fid = store.put(old, os.urandom(size))
        data[fid] = decrypt(old, store.read(fid))
    cur = store.put(new, b"already new")
    data[cur] = b"already new"
    r = run("rewrap", "--storage", store.root, "--from", kp_old, "--to", kp_new)
    assert r.rc == 0, r
    assert r.lines[-1] == "rewrap: 5 rewrapped, 1 already current, 0 failed"
    assert sum(1 for l in r.lines if l.startswith("rewrapped ")) == 5
    no_key_material(r, old, new)
    for fid, plain in data.items():
        assert under_key(store, fid, new)
        assert decrypt(new, store.read(fid)) == plain
        d = run("decrypt", store.path(fid), "--key", kp_new)
        assert d.rc == 0 and d.out == plain, d
        assert mode_of(store.path(fid)) == 0o600
        # the old key no longer opens it
        assert run("decrypt", store.path(fid), "--key", kp_old).rc == 1
    assert temp_files(store.root) == []
    # idempotent
    r = run("rewrap", "-s", store.root, "-f", kp_old, "-t", kp_new)
    assert r.rc == 0 and r.lines == [
        "rewrap: 0 rewrapped, 6 already current, 0 failed"], r


def test_rewrap_dry_run_changes_nothing(keys, store):
    old, kp_old = keys.make()
    new, kp_new = keys.make()
    ids = [store.put(old, os.urandom(n)) for n in (5, 500, 5000)]
    before = store.hashes()
    r = run("rewrap", "--storage", store.root, "--from", kp_old, "--to", kp_new,
            "--dry-run")
    assert r.rc == 0, r
    assert sorted(l.split()[1] for l in r.lines[:-1]) == sorted(ids)
    assert all(l.startswith("would-rewrap ") for l in r.lines[:-1])
    assert r.lines[-1] == ("rewrap (dry run): 3 would be rewrapped, "
                           "0 already current, 0 failed")
    assert store.hashes() == before


def test_rewrap_dry_run_reports_failures(keys, store):
    old, kp_old = keys.make()
    _, kp_new = keys.make()
    good = store.put(old, os.urandom(100))
    bad = store.put(old, os.urandom(100))
    blob = bytearray(store.read(bad))
    blob[-1] ^= 1
    with open(store.path(bad), "wb") as f:
        f.write(blob)
    before = store.hashes()
    r = run("rewrap", "-s", store.root, "-f", kp_old, "-t", kp_new, "-n")
    assert r.rc == 1, r
    assert "would-rewrap %s key %s -> " % (good, key_id(old).hex()) in r.text
    assert "FAILED %s: integrity check failed" % bad in r.text
    assert store.hashes() == before


def fault_build():
    """The tool built with --enable-fault-injection (SECUPLOAD_FAULT_BUILD=1,
    as scripts/test sets it for the sanitizer build)?"""
    return os.environ.get("SECUPLOAD_FAULT_BUILD") == "1"


def test_rewrap_crash_part_way_then_resume(keys, store):
    if not fault_build():
        pytest.skip("needs the tool built with --enable-fault-injection and "
                    "SECUPLOAD_FAULT_BUILD=1 (scripts/test does this for the "
                    "sanitizer build)")
    old, kp_old = keys.make()
    new, kp_new = keys.make()
    data = {}
    for i in range(6):
        fid = store.put(old, os.urandom(1000 + 4097 * i))
        data[fid] = decrypt(old, store.read(fid))
    r = run("rewrap", "--storage", store.root, "--from", kp_old, "--to", kp_new,
            env_extra={"SECUPLOAD_FAULTS": "rewrap-rename=3"})
    assert r.rc == 99, r          # died right before the third rename
    assert "rewrap:" not in r.text
    moved = [fid for fid in data if under_key(store, fid, new)]
    assert len(moved) == 2
    for fid, plain in data.items():
        d = run("decrypt", store.path(fid), "--key", kp_old, "--key", kp_new)
        assert d.rc == 0 and d.out == plain, d
    assert len(temp_files(store.root)) == 1   # the interrupted file's copy
    r = run("rewrap", "--storage", store.root, "--from", kp_old, "--to", kp_new)
    assert r.rc == 0, r
    assert r.lines[-1] == "rewrap: 4 rewrapped, 2 already current, 0 failed"
    for fid, plain in data.items():
        d = run("decrypt", store.path(fid), "--key", kp_new)
        assert d.rc == 0 and d.out == plain, d
    assert temp_files(store.root) == []


def test_rewrap_has_no_crash_hook_in_a_shipped_build(keys, store):
    """The crash hook of the tests above lives in the fault-injection build
    only: a shipped tool reads no such variable and rewraps every file."""
    if fault_build():
        pytest.skip("a fault-injection build has the hook")
    old, kp_old = keys.make()
    new, kp_new = keys.make()
    data = {}
    for i in range(3):
        fid = store.put(old, os.urandom(100 + i))
        data[fid] = decrypt(old, store.read(fid))
    r = run("rewrap", "--storage", store.root, "--from", kp_old, "--to", kp_new,
            env_extra={"SECUPLOAD_FAULTS": "rewrap-rename=1",
                       "SECUPLOAD_FAULT_REWRAP_EXIT": "1"})
    assert r.rc == 0, r
    assert r.lines[-1] == "rewrap: 3 rewrapped, 0 already current, 0 failed"
    for fid, plain in data.items():
        assert decrypt(new, store.read(fid)) == plain
    assert temp_files(store.root) == []


@pytest.fixture
def small_store(tmp_path):
    """A storage directory on a 1 MiB tmpfs (needs root)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs")
    root = tmp_path / "small"
    root.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700",
                        "secupload-clitest", str(root)], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=30, check=False)
    if p.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: %s" % p.stdout.decode().strip())
    try:
        yield Store(root)
    finally:
        subprocess.run(["umount", str(root)], timeout=30, check=False)


def test_rewrap_disk_full_keeps_the_file(keys, small_store):
    """No room for the copy: the file is reported as the store reports a
    full disk to an upload, stays as it was under the old key, and no copy
    is left behind; with room again, a rerun finishes."""
    store = small_store
    old, kp_old = keys.make()
    _, kp_new = keys.make()
    big = store.put(old, os.urandom(600 * 1024))
    before = store.hashes()
    r = run("rewrap", "--storage", store.root, "--from", kp_old, "--to", kp_new)
    assert r.rc == 1, r
    assert "FAILED %s: no space left on the device" % big in r.text, r
    assert r.lines[-1] == "rewrap: 0 rewrapped, 0 already current, 1 failed"
    assert store.hashes() == before
    assert temp_files(store.root) == []
    plain = decrypt(old, store.read(big))
    os.unlink(store.path(big))
    small = store.put(old, plain[:100 * 1024], fid=big)
    r = run("rewrap", "--storage", store.root, "--from", kp_old, "--to", kp_new)
    assert r.rc == 0 and small == big, r


def test_rewrap_several_old_keys_and_failures(keys, store):
    k1, kp1 = keys.make()
    k2, kp2 = keys.make()
    k3, kp3 = keys.make()
    unknown = os.urandom(32)
    a = store.put(k1, b"a" * 10)
    b = store.put(k2, b"b" * 20)
    c = store.put(unknown, b"c" * 30)
    before_c = store.read(c)
    r = run("rewrap", "-s", store.root, "-f", kp1, "-f", kp2, "-t", kp3)
    assert r.rc == 1, r
    assert r.lines[-1] == "rewrap: 2 rewrapped, 0 already current, 1 failed"
    assert "FAILED %s: no key given for key id %s" % (c, key_id(unknown).hex()) in r.lines
    assert decrypt(k3, store.read(a)) == b"a" * 10
    assert decrypt(k3, store.read(b)) == b"b" * 20
    assert store.read(c) == before_c


def test_rewrap_only_touches_stored_names(keys, store):
    old, kp_old = keys.make()
    _, kp_new = keys.make()
    fid = new_id()
    # a valid file under the wrong subdirectory, and odd names
    wrong = "00" if fid[:2] != "00" else "11"
    os.makedirs(os.path.join(store.root, wrong))
    misplaced = os.path.join(store.root, wrong, fid + ".enc")
    with open(misplaced, "wb") as f:
        f.write(encrypt(old, b"x"))
    odd = os.path.join(store.root, wrong, fid.upper() + ".enc")
    with open(odd, "wb") as f:
        f.write(encrypt(old, b"y"))
    top = os.path.join(store.root, "notes.enc")
    with open(top, "wb") as f:
        f.write(encrypt(old, b"z"))
    before = store.hashes()
    r = run("rewrap", "-s", store.root, "-f", kp_old, "-t", kp_new)
    assert r.rc == 0, r
    assert r.lines == ["rewrap: 0 rewrapped, 0 already current, 0 failed"]
    assert store.hashes() == before


def test_rewrap_environment_errors(keys, store, tmp_path):
    old, kp_old = keys.make()
    _, kp_new = keys.make()
    loose, kp_loose = keys.make(mode=0o640)
    store.put(old, b"x")
    before = store.hashes()
    r = run("rewrap", "-s", store.root, "-f", kp_old, "-t", kp_loose)
    assert r.rc == 3 and kp_loose in r.err, r
    no_key_material(r, loose)
    r = run("rewrap", "-s", tmp_path / "nowhere", "-f", kp_old, "-t", kp_new)
    assert r.rc == 3 and r.err.startswith("secupload: "), r
    assert store.hashes() == before


# ---------------------------------------------------------------- fsck

def age(path, seconds):
    t = time.time() - seconds
    os.utime(path, (t, t))


def findings(res):
    return sorted(l for l in res.lines if not l.startswith("summary:"))


def summary(res):
    line = [l for l in res.lines if l.startswith("summary:")]
    assert len(line) == 1 and res.lines[-1] == line[0], res
    return dict(kv.split("=") for kv in line[0].split()[1:])


@pytest.fixture
def messy(keys, store, redis_server, prefix):
    """Storage and Redis with one of every kind of problem."""
    raw, kp = keys.make()
    rc = redis_server.client()
    good = [store.put(raw, os.urandom(n)) for n in (0, 100, 5000)]
    for fid in good:
        put_meta(rc, prefix, fid, raw, store=store)
    orphan = store.put(raw, b"no metadata")
    missing = new_id()
    put_meta(rc, prefix, missing, raw, store=store)
    corrupt = store.put(raw, os.urandom(300))
    put_meta(rc, prefix, corrupt, raw, store=store)
    blob = bytearray(store.read(corrupt))
    blob[150] ^= 0x10
    with open(store.path(corrupt), "wb") as f:
        f.write(blob)
    stale_id = new_id()
    os.makedirs(os.path.join(store.root, stale_id[:2]), exist_ok=True)
    stale = os.path.join(store.root, stale_id[:2], ".tmp-" + stale_id)
    with open(stale, "wb") as f:
        f.write(b"partial")
    age(stale, 2 * 3600)
    fresh = os.path.join(store.root, good[0][:2], ".tmp-" + new_id())
    with open(fresh, "wb") as f:
        f.write(b"uploading")
    age(fresh, 1800)     # half an hour: still not stale
    stale_rw = store.path(good[1]) + ".rewrap.tmp"
    with open(stale_rw, "wb") as f:
        f.write(b"old copy")
    age(stale_rw, 3 * 3600)
    unexpected = os.path.join(store.root, "README")
    with open(unexpected, "w") as f:
        f.write("hi")
    return dict(raw=raw, kp=kp, good=good, orphan=orphan, missing=missing,
                corrupt=corrupt, stale=stale, fresh=fresh, stale_rw=stale_rw,
                unexpected=unexpected)


def test_fsck_finds_every_kind(store, redis_server, prefix, messy):
    m = messy
    r = run("fsck", "--storage", store.root, "--redis", redis_server.addr,
            "--prefix", prefix, "--key", m["kp"])
    assert r.rc == 1, r
    assert findings(r) == sorted([
        "orphan " + m["orphan"],
        "missing " + m["missing"],
        "corrupt " + m["corrupt"],
        "stale-temp " + m["stale"],
        "stale-temp " + m["stale_rw"],
        "in-progress-temp " + m["fresh"],
        "unexpected " + m["unexpected"],
    ])
    s = summary(r)
    assert s["files"] == "5" and s["metadata"] == "5" and s["verified"] == "5"
    assert (s["orphan"], s["missing"], s["corrupt"], s["stale-temp"],
            s["unexpected"], s["in-progress-temp"], s["problems"]) == (
                "1", "1", "1", "2", "1", "1", "6")
    no_key_material(r, m["raw"])
    # nothing was changed without --repair
    assert os.path.exists(m["stale"]) and os.path.exists(m["stale_rw"])


def test_fsck_without_keys_does_not_verify(store, redis_server, prefix, messy):
    r = run("fsck", "--storage", store.root, "--redis", redis_server.addr,
            "--prefix", prefix)
    assert r.rc == 1, r
    assert not any(l.startswith("corrupt ") for l in r.lines)
    assert summary(r)["verified"] == "0"


def test_fsck_repair_removes_only_stale_temps(store, redis_server, prefix, messy):
    m = messy
    before = store.hashes()
    r = run("fsck", "--storage", store.root, "--redis", redis_server.addr,
            "--prefix", prefix, "--key", m["kp"], "--repair")
    assert r.rc == 1, r
    assert "removed " + m["stale"] in r.lines
    assert "removed " + m["stale_rw"] in r.lines
    assert not os.path.exists(m["stale"]) and not os.path.exists(m["stale_rw"])
    after = store.hashes()
    assert after == {p: h for p, h in before.items()
                     if p not in (m["stale"], m["stale_rw"])}
    assert redis_server.client().exists(prefix + "file:" + m["missing"]) == 1
    s = summary(r)
    assert s["removed"] == "2" and s["problems"] == "4"
    # the rest is still reported on the next run
    r = run("fsck", "--storage", store.root, "--redis", redis_server.addr,
            "--prefix", prefix, "--key", m["kp"])
    assert r.rc == 1 and summary(r)["problems"] == "4", r


def test_fsck_odd_names_stay_on_one_line(store, redis_server, prefix):
    """A name with control bytes is reported on one line, each such byte as
    '?'; its UTF-8 letters stay as they are."""
    name = "we\nird\x1b\x7fname-\u00e9".encode("utf-8")
    with open(os.path.join(store.root.encode(), name), "wb") as f:
        f.write(b"x")
    redis_server.client().hset(prefix + "file:bad\rid", "id", "x")
    r = run("fsck", "--storage", store.root, "--redis", redis_server.addr,
            "--prefix", prefix)
    assert r.rc == 1, r
    assert "unexpected %s/we?ird??name-\u00e9" % store.root in r.lines, r
    assert "unexpected redis:%sfile:bad?id" % prefix in r.lines, r
    assert summary(r)["unexpected"] == "2"


def test_fsck_clean(keys, store, redis_server, prefix):
    raw, kp = keys.make()
    rc = redis_server.client()
    ids = [store.put(raw, os.urandom(n)) for n in (1, 2, 3)]
    for fid in ids:
        put_meta(rc, prefix, fid, raw, store=store)
    fresh = os.path.join(store.root, ids[0][:2], ".tmp-" + new_id())
    with open(fresh, "wb") as f:
        f.write(b"in flight")
    r = run("fsck", "-s", store.root, "-r", redis_server.addr, "-p", prefix,
            "-k", kp)
    assert r.rc == 0, r
    assert findings(r) == ["in-progress-temp " + fresh]
    s = summary(r)
    assert s["files"] == "3" and s["verified"] == "3" and s["problems"] == "0"


def test_fsck_lists_unsettled_markers(keys, store, redis_server, prefix):
    """An upload the server marked (DIR/.unsettled/<id>: its metadata write
    had an unknown outcome) is listed and counted as a problem until the
    server settles it; fsck leaves it alone (no --repair of it either)."""
    raw, kp = keys.make()
    rc = redis_server.client()
    fid = store.put(raw, os.urandom(10))
    put_meta(rc, prefix, fid, raw, store=store)
    marked = sorted(new_id() for _ in range(2))
    os.makedirs(os.path.join(store.root, ".unsettled"))
    for m in marked:
        with open(os.path.join(store.root, ".unsettled", m), "w") as f:
            f.write("{}")
    for extra in ((), ("--repair",)):
        r = run("fsck", "-s", store.root, "-r", redis_server.addr, "-p", prefix,
                "-k", kp, *extra)
        assert r.rc == 1, r
        assert findings(r) == ["unsettled " + m for m in marked]
        s = summary(r)
        assert s["unsettled"] == "2" and s["problems"] == "2", s
    assert sorted(os.listdir(os.path.join(store.root, ".unsettled"))) == marked


def test_fsck_empty_storage_is_clean(store, redis_server, prefix):
    r = run("fsck", "-s", store.root, "-r", redis_server.addr, "-p", prefix)
    assert r.rc == 0, r
    assert len(r.lines) == 1
    s = summary(r)
    assert s["files"] == "0" and s["metadata"] == "0" and s["problems"] == "0"


def test_fsck_repair_of_only_stale_temp_leaves_clean(keys, store, redis_server,
                                                     prefix):
    raw, _ = keys.make()
    fid = store.put(raw, b"x")
    put_meta(redis_server.client(), prefix, fid, raw, store=store)
    stale = os.path.join(store.root, fid[:2], ".tmp-" + new_id())
    open(stale, "wb").close()
    age(stale, 7200)
    r = run("fsck", "-s", store.root, "-r", redis_server.addr, "-p", prefix)
    assert r.rc == 1 and findings(r) == ["stale-temp " + stale], r
    r = run("fsck", "-s", store.root, "-r", redis_server.addr, "-p", prefix,
            "--repair")
    assert r.rc == 0, r
    assert not os.path.exists(stale)


def test_fsck_database_option(keys, store, redis_server, prefix):
    raw, _ = keys.make()
    fid = store.put(raw, b"x")
    put_meta(redis_server.client(db=3), prefix, fid, raw, store=store)
    r = run("fsck", "-s", store.root, "-r", redis_server.addr, "-p", prefix,
            "--db", "3")
    assert r.rc == 0, r
    r = run("fsck", "-s", store.root, "-r", redis_server.addr, "-p", prefix)
    assert r.rc == 1 and findings(r) == ["orphan " + fid], r


def test_fsck_redis_down_is_env_error(store, tmp_path):
    port = free_port()     # nothing listens there
    r = run("fsck", "-s", store.root, "-r", "127.0.0.1:%d" % port,
            "--timeout", "500")
    assert r.rc == 3, r
    assert r.err.startswith("secupload: ") and "redis" in r.err
    assert r.out == b""


def test_fsck_redis_stopped_is_env_error(store, tmp_path):
    srv = RedisServer(tmp_path)
    srv.start()
    try:
        r = run("fsck", "-s", store.root, "-r", srv.addr)
        assert r.rc == 0, r
    finally:
        srv.stop()
    r = run("fsck", "-s", store.root, "-r", srv.addr, "--timeout", "500")
    assert r.rc == 3, r


def test_fsck_storage_unreadable_is_env_error(redis_server, prefix, tmp_path):
    r = run("fsck", "-s", tmp_path / "nowhere", "-r", redis_server.addr,
            "-p", prefix)
    assert r.rc == 3 and "storage" in r.err, r
    f = tmp_path / "plainfile"
    f.write_text("x")
    r = run("fsck", "-s", f, "-r", redis_server.addr, "-p", prefix)
    assert r.rc == 3, r


def test_fsck_password_file(store, tmp_path):
    srv = RedisServer(tmp_path)
    srv.start()
    try:
        secret = "pw-" + new_id()
        subprocess.run(["redis-cli", "-p", str(srv.port), "CONFIG", "SET",
                        "requirepass", secret], check=True,
                       stdout=subprocess.DEVNULL, timeout=30)
        pwf = tmp_path / "pw"
        pwf.write_text(secret + "\n")
        os.chmod(pwf, 0o600)
        r = run("fsck", "-s", store.root, "-r", srv.addr, "--password-file", pwf)
        assert r.rc == 0, r
        wrong = tmp_path / "wrongpw"
        wrong.write_text("not-" + secret + "\n")
        r = run("fsck", "-s", store.root, "-r", srv.addr, "--password-file", wrong)
        assert r.rc == 3, r
        assert secret not in r.err
        r = run("fsck", "-s", store.root, "-r", srv.addr)
        assert r.rc == 3, r
        r = run("fsck", "-s", store.root, "-r", srv.addr,
                "--password-file", tmp_path / "absent")
        assert r.rc == 3, r
    finally:
        srv.stop()


# ------------------------------------------------- fsck: files bound to ids

def fsck(store, redis_server, prefix, *extra):
    return run("fsck", "-s", store.root, "-r", redis_server.addr, "-p", prefix,
               *extra)


def test_fsck_reports_swapped_file(keys, store, redis_server, prefix):
    """A's file copied over B's, the same size: it verifies, but its IV is
    not the one recorded for B. Found with and without keys."""
    raw, kp = keys.make()
    rc = redis_server.client()
    plains = {store.put(raw, p): p for p in (b"A" * 29, b"B" * 29)}
    for fid, plain in plains.items():
        put_meta(rc, prefix, fid, raw, store=store, plain=plain)
    a, b = plains
    assert fsck(store, redis_server, prefix, "-k", kp).rc == 0
    shutil.copyfile(store.path(a), store.path(b))
    for extra in ((), ("-k", kp)):
        r = fsck(store, redis_server, prefix, *extra)
        assert r.rc == 1, r
        assert findings(r) == ["mismatch " + b], r
        s = summary(r)
        assert s["mismatch"] == "1" and s["problems"] == "1", s
    # a recorded IV is never replaced
    before = rc.hgetall(prefix + "file:" + b)
    r = fsck(store, redis_server, prefix, "-k", kp, "--backfill-iv")
    assert r.rc == 1 and findings(r) == ["mismatch " + b], r
    assert rc.hgetall(prefix + "file:" + b) == before


def test_fsck_rewrapped_files_stay_bound(keys, store, redis_server, prefix):
    """A rewrap changes the tag, not the IV: the metadata still matches."""
    old, kp_old = keys.make()
    new, kp_new = keys.make()
    rc = redis_server.client()
    for n in (0, 100, 70000):
        fid = store.put(old, os.urandom(n))
        put_meta(rc, prefix, fid, old, store=store)
    assert run("rewrap", "-s", store.root, "-f", kp_old, "-t", kp_new).rc == 0
    r = fsck(store, redis_server, prefix, "-k", kp_new)
    assert r.rc == 0 and findings(r) == [], r
    assert summary(r)["verified"] == "3"


@pytest.fixture
def unbound(keys, store, redis_server, prefix):
    """Metadata from before IVs were recorded: good files, one with a file
    of another id (same size) copied over it, one corrupt, one whose
    plaintext is not the one the metadata describes."""
    raw, kp = keys.make()
    rc = redis_server.client()
    plains = [b"", b"x", os.urandom(5000), os.urandom(2 * 1024 * 1024 + 3),
              os.urandom(100)]
    good = [store.put(raw, p) for p in plains]
    for fid, plain in zip(good, plains):
        put_meta(rc, prefix, fid, raw, plain=plain)
    victim = store.put(raw, os.urandom(100))
    put_meta(rc, prefix, victim, raw, plain=decrypt(raw, store.read(victim)))
    shutil.copyfile(store.path(good[-1]), store.path(victim))
    corrupt = store.put(raw, os.urandom(300))
    put_meta(rc, prefix, corrupt, raw, plain=decrypt(raw, store.read(corrupt)))
    blob = bytearray(store.read(corrupt))
    blob[150] ^= 0x10
    with open(store.path(corrupt), "wb") as f:
        f.write(blob)
    other = store.put(raw, b"not what the metadata says")
    put_meta(rc, prefix, other, raw, plain=b"something else of another size")
    return dict(raw=raw, kp=kp, good=good, victim=victim, corrupt=corrupt,
                other=other, all=good + [victim, corrupt, other])


def test_fsck_reports_metadata_without_iv(store, redis_server, prefix,
                                          unbound):
    u = unbound
    r = fsck(store, redis_server, prefix)
    assert r.rc == 1, r
    assert findings(r) == sorted("no-iv " + f for f in u["all"]), r
    s = summary(r)
    assert s["no-iv"] == str(len(u["all"])) and s["problems"] == s["no-iv"], s
    r = fsck(store, redis_server, prefix, "-k", u["kp"])
    assert r.rc == 1, r
    assert findings(r) == sorted(["corrupt " + u["corrupt"]] + [
        "no-iv " + f for f in u["all"] if f != u["corrupt"]]), r
    # nothing was recorded
    rc = redis_server.client()
    assert not [f for f in u["all"] if rc.hexists(prefix + "file:" + f, "iv")]


def test_fsck_backfill_iv(store, redis_server, prefix, unbound):
    """--backfill-iv records the IV of a file whose plaintext is the one its
    metadata recorded at upload; a swapped or different file is reported,
    not bound."""
    u = unbound
    rc = redis_server.client()
    r = fsck(store, redis_server, prefix, "-k", u["kp"], "--backfill-iv")
    assert r.rc == 1, r
    assert findings(r) == sorted(
        ["iv-recorded " + f for f in u["good"]]
        + ["mismatch " + u["victim"], "mismatch " + u["other"],
           "corrupt " + u["corrupt"]]), r
    s = summary(r)
    assert (s["iv-recorded"], s["mismatch"], s["corrupt"], s["problems"]) == (
        str(len(u["good"])), "2", "1", "3"), s
    no_key_material(r, u["raw"])
    for fid in u["good"]:
        assert rc.hget(prefix + "file:" + fid, "iv").decode() == \
            file_iv(store.read(fid))
    for fid in (u["victim"], u["other"], u["corrupt"]):
        assert not rc.hexists(prefix + "file:" + fid, "iv"), fid
    # the next run: the good files are bound, the rest still reported
    r = fsck(store, redis_server, prefix, "-k", u["kp"])
    assert findings(r) == sorted(
        ["no-iv " + u["victim"], "no-iv " + u["other"],
         "corrupt " + u["corrupt"]]), r
    r = fsck(store, redis_server, prefix, "-k", u["kp"], "--backfill-iv")
    assert summary(r)["iv-recorded"] == "0", r


def test_fsck_backfill_iv_needs_key(store, redis_server, prefix, unbound):
    r = fsck(store, redis_server, prefix, "--backfill-iv")
    assert r.rc == 2 and "--key" in r.err and r.out == b"", r
    rc = redis_server.client()
    assert not [f for f in unbound["all"]
                if rc.hexists(prefix + "file:" + f, "iv")]
