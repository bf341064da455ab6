"""secupload decrypt, verify and fsck on format v2 files (written here from
the layout alone, tests/integration/v2_util.py): the id from the file name
or --id, a clear error when neither gives one, hostile files refused."""

import os

from cli_helpers import new_id, put_meta, run
from test_cli import findings, summary
import v2_util as V

SEG = 65536


def _put_v2(store, raw, plain, fid=None, edit=None):
    fid = fid or new_id()
    os.makedirs(os.path.join(store.root, fid[:2]), mode=0o700, exist_ok=True)
    with open(store.path(fid), "wb") as f:
        f.write(V.v2_file(plain, raw, fid, os.urandom(16), edit=edit))
    return fid


def test_decrypt_and_verify_v2_by_name(keys, store, tmp_path):
    raw, kp = keys.make()
    plain = os.urandom(3 * SEG + 77)
    fid = _put_v2(store, raw, plain)
    r = run("decrypt", store.path(fid), "-k", kp)
    assert r.rc == 0, r
    assert r.out == plain
    r = run("verify", store.path(fid), "-k", kp)
    assert r.rc == 0, r
    assert r.lines == ["OK %s %d key %s" % (store.path(fid), len(plain),
                                            V.H.key_id(raw).hex())]


def test_v2_under_another_name_needs_id(keys, store, tmp_path):
    raw, kp = keys.make()
    plain = os.urandom(SEG + 5)
    fid = _put_v2(store, raw, plain)
    copy = str(tmp_path / "copy.bin")
    with open(store.path(fid), "rb") as a, open(copy, "wb") as b:
        b.write(a.read())
    out = str(tmp_path / "out")
    r = run("decrypt", copy, "-k", kp, "-o", out)
    assert r.rc == 1, r
    assert "--id" in r.err and "gives none" in r.err, r
    assert not os.path.exists(out)
    r = run("verify", copy, "-k", kp)
    assert r.rc == 1 and "FAILED %s" % copy in r.text and "--id" in r.text, r
    r = run("decrypt", copy, "-k", kp, "--id", fid, "-o", out)
    assert r.rc == 0, r
    assert open(out, "rb").read() == plain
    r = run("verify", copy, "-k", kp, "--id", fid)
    assert r.rc == 0 and r.lines[0].startswith("OK "), r
    # the wrong id: refused, the output removed
    os.unlink(out)
    r = run("decrypt", copy, "-k", kp, "--id", new_id(), "-o", out)
    assert r.rc == 1, r
    assert not os.path.exists(out)
    r = run("decrypt", copy, "-k", kp, "--id", "XYZ")
    assert r.rc == 2 and "--id" in r.err, r


def test_hostile_v2_refused(keys, store, tmp_path):
    raw, kp = keys.make()
    plain = os.urandom(4 * SEG + 9)
    fid = _put_v2(store, raw, plain)
    blob = bytearray(open(store.path(fid), "rb").read())
    a, b = V.seg_off(1), V.seg_off(2)
    blob[a:b], blob[b:b + (b - a)] = blob[b:b + (b - a)], blob[a:b]
    with open(store.path(fid), "wb") as f:
        f.write(bytes(blob))
    out = str(tmp_path / "out")
    r = run("decrypt", store.path(fid), "-k", kp, "-o", out)
    assert r.rc == 1, r
    assert not os.path.exists(out)
    r = run("verify", store.path(fid), "-k", kp)
    assert r.rc == 1 and r.text.startswith("FAILED "), r


def test_fsck_v1_and_v2(keys, store, redis_server, prefix):
    raw, kp = keys.make()
    rc = redis_server.client()
    v1 = store.put(raw, os.urandom(100))
    good = _put_v2(store, raw, os.urandom(2 * SEG))
    bad = _put_v2(store, raw, os.urandom(2 * SEG + 1))
    for fid in (v1, good, bad):
        put_meta(rc, prefix, fid, raw, store=store)
    r = run("fsck", "-s", store.root, "-r", redis_server.addr, "-p", prefix,
            "-k", kp)
    assert r.rc == 0, r
    assert summary(r)["verified"] == "3"
    blob = bytearray(open(store.path(bad), "rb").read())
    blob[V.seg_off(1) + 30] ^= 1
    with open(store.path(bad), "wb") as f:
        f.write(bytes(blob))
    r = run("fsck", "-s", store.root, "-r", redis_server.addr, "-p", prefix,
            "-k", kp)
    assert r.rc == 1 and findings(r) == ["corrupt " + bad], r
    # without keys: the nonce compared with the metadata's iv
    rc.hset(prefix + "file:" + good, "iv", "0" * 32)
    r = run("fsck", "-s", store.root, "-r", redis_server.addr, "-p", prefix)
    assert r.rc == 1 and findings(r) == ["mismatch " + good], r
    # a cut v2 file is reported by its size alone
    with open(store.path(good), "r+b") as f:
        f.truncate(V.seg_off(1))
    r = run("verify", store.path(good), "-k", kp)
    assert r.rc == 1 and "FAILED" in r.text, r
