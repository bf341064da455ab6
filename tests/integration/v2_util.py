"""Stored files of both formats written here from the layouts alone (src/
su_seg.h's header comment for version 2, docs/format.md for version 1),
with python3-cryptography: an independent check of the module's reader,
and the forger of hostile files whose tags are right (only a holder of the
data key could make them)."""

import hashlib
import hmac
import os
import secrets
import struct

import requests

import secupload_harness as H

MAGIC2 = b"SECUPLD\x02"
HEADER2 = 140
OVERHEAD = 48
MORE, LAST, PENDING = 0, 1, 2


def _cbc(key, iv, data):
    from cryptography.hazmat.primitives.ciphers import (Cipher, algorithms,
                                                        modes)
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return enc.update(data) + enc.finalize()


def _pad(data):
    n = 16 - len(data) % 16
    return data + bytes([n]) * n


def header2(kek, fid, nonce, dk, segsize):
    from cryptography.hazmat.primitives.keywrap import aes_key_wrap
    h = (MAGIC2 + H.key_id(kek) + aes_key_wrap(kek, dk)
         + struct.pack(">I", segsize) + nonce)
    tag = hmac.new(dk[32:], b"\x01" + bytes.fromhex(fid) + h,
                   hashlib.sha256).digest()
    return h + tag


def segment(dk, fid, nonce, index, flag, chunk):
    iv = secrets.token_bytes(16)
    ct = _cbc(dk[:32], iv, chunk if flag == MORE and len(chunk) % 16 == 0
              else _pad(chunk))
    msg = (b"\x02" + bytes.fromhex(fid) + nonce + struct.pack(">Q", index)
           + bytes([flag]) + iv + ct)
    return iv + ct + hmac.new(dk[32:], msg, hashlib.sha256).digest()


def plan(plain, segsize):
    """[(index, flag, chunk)] of a well-formed file."""
    chunks = [plain[i:i + segsize] for i in range(0, len(plain), segsize)]
    chunks = chunks or [b""]
    return [(i, LAST if i == len(chunks) - 1 else MORE, c)
            for i, c in enumerate(chunks)]


def v2_file(plain, kek, fid, nonce, segsize=65536, dk=None, edit=None):
    """A v2 file; edit(plan) may change the plan first (a forgery)."""
    dk = dk or secrets.token_bytes(64)
    segs = plan(plain, segsize)
    if edit:
        segs = edit(segs)
    return header2(kek, fid, nonce, dk, segsize) + b"".join(
        segment(dk, fid, nonce, i, f, c) for i, f, c in segs)


def v1_file(plain, kek, iv):
    """A v1 file with the IV given (the one its metadata records)."""
    from cryptography.hazmat.primitives.keywrap import aes_key_wrap
    dk = secrets.token_bytes(64)
    body = H.MAGIC + H.key_id(kek) + aes_key_wrap(kek, dk) + iv \
        + _cbc(dk[:32], iv, _pad(plain))
    return body + hmac.new(dk[32:], body, hashlib.sha256).digest()


def seg_off(i, segsize=65536):
    return HEADER2 + i * (segsize + OVERHEAD)


def enc_path(storage, fid):
    return os.path.join(storage, fid[:2], fid + ".enc")


def put(stack, plain, version=2, **kw):
    """An upload of plain, its stored file then replaced by one of this
    version written here, under the nonce (IV) its metadata records.
    Returns (id, nonce, path)."""
    r = requests.post(stack.url(), data=plain, timeout=120,
                      headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    fid = r.json()["id"]
    nonce = bytes.fromhex(stack.rv.meta(fid)["iv"])
    path = enc_path(stack.site.storage, fid)
    blob = v2_file(plain, stack.kek1, fid, nonce, **kw) if version == 2 \
        else v1_file(plain, stack.kek1, nonce)
    replace(path, blob)
    return fid, nonce, path


def replace(path, blob):
    """Write blob over path as the server's user can read it (rename)."""
    st = os.stat(path)
    tmp = path + ".test"
    with open(tmp, "wb") as f:
        f.write(blob)
    os.chmod(tmp, 0o600)
    if os.geteuid() == 0:
        os.chown(tmp, st.st_uid, st.st_gid)
    os.rename(tmp, path)
