"""secupload convert (format version 1 to 2) and rewrap of version 2 files:
what the tool wrote is read back with the test suite's own reader of
docs/format.md (secupload_harness.decrypt_blob2), by the file's id."""

import os
import stat

import pytest

import secupload_harness as H
from cli_helpers import decrypt, key_id, new_id, run

SEG = 65536


def temp_files(root):
    found = []
    for dirpath, _dirs, files in os.walk(root):
        found += [os.path.join(dirpath, f) for f in files
                  if f.endswith(".rewrap.tmp") or f.startswith(".tmp-")]
    return found


def put2(store, kek, plain, fid=None, segsize=4096):
    """A version 2 file written by the suite's own encoder."""
    fid = fid or new_id()
    os.makedirs(os.path.join(store.root, fid[:2]), mode=0o700, exist_ok=True)
    with open(store.path(fid), "wb") as f:
        f.write(H.encrypt_blob2(plain, kek, fid, segsize))
    os.chmod(store.path(fid), 0o600)
    return fid


def fault_build():
    return os.environ.get("SECUPLOAD_FAULT_BUILD") == "1"


# ---------------------------------------------------------------- convert

def test_convert_storage_dir(keys, store):
    a, kp_a = keys.make()
    b, kp_b = keys.make()
    data, ivs = {}, {}
    for size in (0, 1, 16, 1000, SEG, SEG + 1, 3 * SEG + 5):
        fid = store.put(a, os.urandom(size))
        data[fid], ivs[fid] = decrypt(a, store.read(fid)), store.read(fid)[88:104]
    fid = store.put(b, b"under the other key")
    data[fid], ivs[fid] = b"under the other key", store.read(fid)[88:104]
    v2 = put2(store, a, b"already version 2")
    v2_before = store.read(v2)
    r = run("convert", "--key", kp_a, "--key", kp_b, store.root)
    assert r.rc == 0, r
    assert r.lines[-1] == "convert: 8 converted, 1 already version 2, 0 failed"
    assert sorted(l.split()[1] for l in r.lines[:-1]) == sorted(data)
    for fid, plain in data.items():
        blob = store.read(fid)
        assert blob[:8] == H.MAGIC2
        assert int.from_bytes(blob[88:92], "big") == SEG
        assert len(blob) == H.v2_file_size(len(plain), SEG)
        out, kek = H.decrypt_blob(blob, [a, b], fid)
        assert out == plain
        assert blob[8:16] == key_id(kek) and kek == (b if plain.startswith(
            b"under the other") else a)          # under the key it was under
        assert blob[92:108] == ivs[fid]          # the IV kept as the nonce
        assert stat.S_IMODE(os.stat(store.path(fid)).st_mode) == 0o600
    assert store.read(v2) == v2_before
    assert temp_files(store.root) == []
    r = run("convert", "-k", kp_a, "-k", kp_b, "-v", store.root)
    assert r.rc == 0, r
    assert r.lines[-1] == "convert: 0 converted, 9 already version 2, 0 failed"
    assert sum(1 for l in r.lines if l.startswith("version-2 ")) == 9


def test_convert_reports_and_leaves_bad_files(keys, store):
    a, kp_a = keys.make()
    other, _ = keys.make()
    good = store.put(a, os.urandom(5000))
    bad = store.put(a, os.urandom(5000))
    blob = bytearray(store.read(bad))
    blob[200] ^= 1
    with open(store.path(bad), "wb") as f:
        f.write(blob)
    nokey = store.put(other, b"no key for this one")
    before = {fid: store.read(fid) for fid in (bad, nokey)}
    r = run("convert", "--key", kp_a, store.root)
    assert r.rc == 1, r
    assert r.lines[-1] == "convert: 1 converted, 0 already version 2, 2 failed"
    assert any(l.startswith("FAILED %s: " % bad) for l in r.lines), r
    assert any(l.startswith("FAILED %s: " % nokey) for l in r.lines), r
    for fid, b in before.items():
        assert store.read(fid) == b
    assert store.read(good)[:8] == H.MAGIC2
    assert temp_files(store.root) == []


def test_convert_dry_run_changes_nothing(keys, store):
    a, kp_a = keys.make()
    ids = [store.put(a, os.urandom(n)) for n in (5, 70000)]
    before = store.hashes()
    r = run("convert", "--key", kp_a, "--dry-run", store.root)
    assert r.rc == 0, r
    assert sorted(l.split()[1] for l in r.lines[:-1]) == sorted(ids)
    assert all(l.startswith("would-convert ") for l in r.lines[:-1])
    assert r.lines[-1] == ("convert (dry run): 2 would be converted, "
                           "0 already version 2, 0 failed")
    assert store.hashes() == before


def test_convert_one_file_by_name_or_id(keys, store, tmp_path):
    a, kp_a = keys.make()
    fid = store.put(a, b"one file")
    r = run("convert", "--key", kp_a, store.path(fid))
    assert r.rc == 0 and r.lines[0] == "converted " + fid, r
    assert H.decrypt_blob(store.read(fid), [a], fid)[0] == b"one file"
    # a copy elsewhere under another name needs its id
    other = store.put(a, b"copied")
    copy = tmp_path / "copy.bin"
    copy.write_bytes(store.read(other))
    r = run("convert", "--key", kp_a, copy)
    assert r.rc == 2 and "--id" in r.err, r
    assert copy.read_bytes() == store.read(other)
    r = run("convert", "--key", kp_a, "--id", "xyz", copy)
    assert r.rc == 2, r
    r = run("convert", "--key", kp_a, "--id", other, copy)
    assert r.rc == 0, r
    assert H.decrypt_blob(copy.read_bytes(), [a], other)[0] == b"copied"


def test_convert_usage_and_environment(keys, store, tmp_path):
    a, kp_a = keys.make()
    assert run("convert", store.root).rc == 2
    assert run("convert", "--key", kp_a).rc == 2
    assert run("convert", "--key", kp_a, store.root, store.root).rc == 2
    assert run("convert", "--key", kp_a, "--id", new_id(), store.root).rc == 2
    assert run("convert", "--key", kp_a, tmp_path / "missing").rc == 3
    assert run("convert", "--key", tmp_path / "nokey", store.root).rc == 3
    r = run("convert", "--help")
    assert r.rc == 0 and "FILE|DIR" in r.text


def test_convert_crash_part_way_then_resume(keys, store):
    if not fault_build():
        pytest.skip("needs the tool built with --enable-fault-injection and "
                    "SECUPLOAD_FAULT_BUILD=1 (scripts/test does this for the "
                    "sanitizer build)")
    a, kp_a = keys.make()
    data = {}
    for i in range(6):
        fid = store.put(a, os.urandom(1000 + 40000 * i))
        data[fid] = decrypt(a, store.read(fid))
    r = run("convert", "--key", kp_a, store.root,
            env_extra={"SECUPLOAD_FAULTS": "rewrap-rename=3"})
    assert r.rc == 99, r          # died right before the third rename
    done = [fid for fid in data if store.read(fid)[:8] == H.MAGIC2]
    assert len(done) == 2
    for fid, plain in data.items():   # every file whole, in one version or the other
        assert H.decrypt_blob(store.read(fid), [a], fid)[0] == plain
    assert len(temp_files(store.root)) == 1
    r = run("convert", "--key", kp_a, store.root)
    assert r.rc == 0, r
    assert r.lines[-1] == "convert: 4 converted, 2 already version 2, 0 failed"
    for fid, plain in data.items():
        assert H.decrypt_blob(store.read(fid), [a], fid)[0] == plain
    assert temp_files(store.root) == []


# ---------------------------------------------------------------- rewrap, version 2

def test_rewrap_v2_header_only(keys, store):
    old, kp_old = keys.make()
    new, kp_new = keys.make()
    data, before = {}, {}
    for size in (0, 1, 4096, 10000):
        fid = put2(store, old, os.urandom(size))
        data[fid] = H.decrypt_blob(store.read(fid), [old], fid)[0]
        before[fid] = store.read(fid)
    v1 = store.put(old, b"a version 1 file")
    data[v1] = b"a version 1 file"
    cur = put2(store, new, b"already new")
    r = run("rewrap", "--storage", store.root, "--from", kp_old, "--to", kp_new)
    assert r.rc == 0, r
    assert r.lines[-1] == "rewrap: 5 rewrapped, 1 already current, 0 failed"
    for fid, plain in data.items():
        blob = store.read(fid)
        assert blob[8:16] == key_id(new)
        if fid == v1:
            assert decrypt(new, blob) == plain
            continue
        assert H.decrypt_blob(blob, [new], fid)[0] == plain
        with pytest.raises(H.FormatError):
            H.decrypt_blob(blob, [old], fid)
        # only the header's key fields and tag changed
        b0 = before[fid]
        assert blob[:8] == b0[:8] and blob[88:108] == b0[88:108]
        assert blob[140:] == b0[140:]
        assert blob[16:88] != b0[16:88] and blob[108:140] != b0[108:140]
        assert stat.S_IMODE(os.stat(store.path(fid)).st_mode) == 0o600
    assert temp_files(store.root) == []
    assert run("rewrap", "-s", store.root, "-f", kp_old, "-t", kp_new).lines == [
        "rewrap: 0 rewrapped, 6 already current, 0 failed"]


def test_rewrap_v2_damaged_file_reported_and_left(keys, store):
    old, kp_old = keys.make()
    new, kp_new = keys.make()
    good = put2(store, old, os.urandom(9000))
    bad = put2(store, old, os.urandom(9000))
    blob = bytearray(store.read(bad))
    blob[140 + 4096 + 48 + 20] ^= 1     # inside the second segment
    with open(store.path(bad), "wb") as f:
        f.write(blob)
    cut = put2(store, old, os.urandom(9000))
    with open(store.path(cut), "r+b") as f:
        f.truncate(140 + 4096 + 48)       # the last segment gone
    left = {fid: store.read(fid) for fid in (bad, cut)}
    r = run("rewrap", "--storage", store.root, "--from", kp_old, "--to", kp_new)
    assert r.rc == 1, r
    assert r.lines[-1] == "rewrap: 1 rewrapped, 0 already current, 2 failed"
    for fid, b in left.items():
        assert store.read(fid) == b
        assert any(l.startswith("FAILED %s: " % fid) for l in r.lines), r
    assert store.read(good)[8:16] == key_id(new)
    assert temp_files(store.root) == []
    # the dry run reports the same and changes nothing
    r = run("rewrap", "-s", store.root, "-f", kp_old, "-t", kp_new, "-n")
    assert r.rc == 1 and r.lines[-1] == ("rewrap (dry run): 0 would be rewrapped, "
                                         "1 already current, 2 failed"), r
