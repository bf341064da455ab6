"""Resumable uploads (the tus protocol) in the tests: the Locations, a
client of a few lines, format v2 decrypted from its documented layout alone
(docs/format.md), and what must be left of an upload (nothing, once it is
finished, terminated or expired)."""

import base64
import hashlib
import hmac
import os

import requests

import secupload_harness as H

TUS = {"Tus-Resumable": "1.0.0"}
CTYPE = "application/offset+octet-stream"
V2_MAGIC = b"SECUPLD\x02"
V2_HEADER = 140


def locations(expire=None):
    """/api/tus/ (default settings), /tus-small/ (1 KiB), /tus-typed/
    (images only), /tus-short/ (expiry after `expire` seconds) and
    /tus-cors/ (CORS for http://app.example)."""
    return """
<Location /api/tus/>
    SetHandler secupload-tus
    SecUploadEnable tus
</Location>
<Location /tus-small/>
    SetHandler secupload-tus
    SecUploadEnable tus
    SecUploadMaxSize 1K
</Location>
<Location /tus-typed/>
    SetHandler secupload-tus
    SecUploadEnable tus
    SecUploadAllowedTypes image/*
</Location>
<Location /tus-short/>
    SetHandler secupload-tus
    SecUploadEnable tus
    SecUploadTusExpire %d
</Location>
<Location /tus-cors/>
    SetHandler secupload-tus
    SecUploadEnable tus
    SecUploadCorsOrigins http://app.example
</Location>
""" % (expire or 2)


def metadata(**kv):
    return ",".join("%s %s" % (k, base64.b64encode(v.encode()).decode())
                    for k, v in kv.items())


def create(stack, length, path="/api/tus/", headers=None, body=None):
    h = dict(TUS, **{"Upload-Length": str(length)})
    if body is not None:
        h["Content-Type"] = CTYPE
    h.update(headers or {})
    return requests.post(stack.url(path), headers=h, data=body, timeout=60)


def tus_url(stack, resp):
    loc = resp.headers["Location"]
    assert loc.startswith("/"), loc
    return stack.url(loc)


def patch(url, offset, data, headers=None, timeout=120):
    h = dict(TUS, **{"Upload-Offset": str(offset), "Content-Type": CTYPE})
    h.update(headers or {})
    return requests.patch(url, headers=h, data=data, timeout=timeout)


def head(url):
    return requests.head(url, headers=TUS, timeout=30)


def upload_id(url):
    return url.rstrip("/").rsplit("/", 1)[1]


def tus_keys(stack, fid):
    """The Redis keys of upload fid, and its entry in the expiry set."""
    c = stack.redis.client(db=stack.redis_db)
    keys = [k for k in (stack.prefix + "tus:" + fid,
                        stack.prefix + "tus-lock:" + fid) if c.exists(k)]
    if c.zscore(stack.prefix + "tus-expiry", fid) is not None:
        keys.append("expiry entry")
    return keys


def tus_file(stack, fid):
    return os.path.join(stack.site.storage, fid[:2], ".tus-" + fid)


def assert_gone(stack, fid):
    """Nothing of unfinished upload fid: no file, no state, no lock."""
    assert not os.path.exists(tus_file(stack, fid))
    assert not os.path.exists(os.path.join(stack.site.storage, fid[:2],
                                           fid + ".enc"))
    assert tus_keys(stack, fid) == [], tus_keys(stack, fid)
    assert not stack.rv.meta(fid)


def decrypt_v2(blob, keks, fid):
    """Check every tag and decrypt a v2 file of id fid; (plaintext, kek)."""
    from cryptography.hazmat.primitives.ciphers import (Cipher, algorithms,
                                                        modes)
    from cryptography.hazmat.primitives.keywrap import aes_key_unwrap
    assert blob[:8] == V2_MAGIC, blob[:8]
    kek = [k for k in keks if H.key_id(k) == blob[8:16]][0]
    dk = aes_key_unwrap(kek, blob[16:88])
    enc, mac = dk[:32], dk[32:]
    idb = bytes.fromhex(fid)
    size = int.from_bytes(blob[88:92], "big")
    nonce = blob[92:108]
    htag = hmac.new(mac, b"\x01" + idb + blob[:108], hashlib.sha256).digest()
    assert hmac.compare_digest(htag, blob[108:140]), "header tag"
    out, pos, i = [], V2_HEADER, 0
    while True:
        rest = len(blob) - pos
        last = rest <= size + 64
        seg = blob[pos:pos + (rest if last else size + 48)]
        iv, ct, tag = seg[:16], seg[16:-32], seg[-32:]
        want = hmac.new(mac, b"\x02" + idb + nonce + i.to_bytes(8, "big")
                        + bytes([1 if last else 0]) + iv + ct,
                        hashlib.sha256).digest()
        assert hmac.compare_digest(want, tag), "segment %d tag" % i
        dec = Cipher(algorithms.AES(enc), modes.CBC(iv)).decryptor()
        plain = dec.update(ct) + dec.finalize()
        if last:
            pad = plain[-1]
            assert 1 <= pad <= 16 and plain[-pad:] == bytes([pad]) * pad
            out.append(plain[:-pad])
            return b"".join(out), kek
        out.append(plain)
        pos += size + 48
        i += 1


def check_stored(stack, fid, plain, name="", ctype="application/octet-stream"):
    """A finished upload is a stored file as a one-shot upload's: the file
    (decrypting to plain, its nonce as iv), the metadata and one
    upload.stored entry; nothing of the upload left."""
    path = os.path.join(stack.site.storage, fid[:2], fid + ".enc")
    with open(path, "rb") as f:
        blob = f.read()
    out, kek = decrypt_v2(blob, stack.keks, fid)
    assert out == plain, "decrypted bytes differ"
    assert kek == stack.kek1
    meta = stack.rv.meta(fid)
    assert meta["size"] == str(len(plain)), meta
    assert meta["sha256"] == hashlib.sha256(plain).hexdigest(), meta
    assert meta["iv"] == blob[92:108].hex(), meta
    assert meta["name"] == name and meta["content_type"] == ctype, meta
    assert meta["path"] == "%s/%s.enc" % (fid[:2], fid), meta
    assert meta["key_id"] == H.key_id(stack.kek1).hex(), meta
    assert meta["client_ip"] == "127.0.0.1" and meta["request_id"], meta
    stored = [e for e in stack.rv.audit_all()
              if e.get("event") == "upload.stored" and e.get("id") == fid]
    assert len(stored) == 1, stored
    assert not os.path.exists(tus_file(stack, fid))
    c = stack.redis.client(db=stack.redis_db)
    assert c.zscore(stack.prefix + "tus-expiry", fid) is None
    assert not c.exists(stack.prefix + "tus-lock:" + fid)
    return meta
