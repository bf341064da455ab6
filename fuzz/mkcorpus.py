#!/usr/bin/env python3
"""Write the seed corpora under fuzz/corpus/<target>/ (run from anywhere).

The seeds are committed; this script documents how they were made and
rebuilds them. Stored files are encrypted with the fixed KEK of
fuzz_reader.c (bytes 0x00..0x1f), with python3-cryptography, which also
shows that the format can be written by another implementation.
"""
import hashlib
import hmac
import os
import shutil

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.keywrap import aes_key_wrap

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
KEK = bytes(range(32))
KEK_ID = hashlib.sha256(KEK).digest()[:8]
MAGIC = b"SECUPLD\x01"


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- fuzz_mp: control byte, boundary, "\n", body ----

def mp(ctl, boundary, body):
    return bytes([ctl]) + boundary + b"\n" + body


def part(b, headers, data):
    return b"--" + b + b"\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n" + data + b"\r\n"


def mp_seeds():
    b = b"AaB03x"
    one = part(b, [b'Content-Disposition: form-data; name="file"; filename="a.txt"',
                   b"Content-Type: text/plain"], b"hello world") + b"--" + b + b"--\r\n"
    write("fuzz_mp", "01-one-file", mp(0x03, b, one))
    two = (part(b, [b'Content-Disposition: form-data; name="title"'], b"A title")
           + part(b, [b'Content-Disposition: form-data; name="file"; filename="r.pdf"',
                      b"Content-Type: application/pdf", b"Content-MD5: XrY7u+Ae7tCTyyK7j1rNww=="],
                  b"%PDF-1.4\r\n\x00\x01\x02")
           + b"--" + b + b"--")
    write("fuzz_mp", "02-two-parts", mp(0x01, b, two))
    look = part(b, [b'Content-Disposition: form-data; name="file"; filename="x"'],
                b"\r\n--AaB0\r\n--AaB03\r\r\n--AaB\r\n-\r--AaB03x \r\n--Aa") + b"--" + b + b"--\r\n"
    write("fuzz_mp", "03-lookalikes", mp(0x02, b, look))
    pre = (b"preamble text\r\n\r\n" + b"--" + b + b" \t \r\n"
           + b'Content-Disposition: form-data; name="file"; filename="p"\r\n\r\ndata\r\n'
           + b"--" + b + b"--  epilogue\r\n--" + b + b"\r\nmore")
    write("fuzz_mp", "04-preamble-padding-epilogue", mp(0x0b, b, pre))
    ext = part(b, [b"Content-Disposition: form-data; name=file; filename=\"fallback.txt\"; "
                   b"filename*=UTF-8''%E2%82%AC%20rates.txt"], b"x") + b"--" + b + b"--\r\n"
    write("fuzz_mp", "05-filename-star", mp(0x07, b, ext))
    long_b = b"'()+_,-./:=? " * 5 + b"0123"   # 69 chars
    long_b = long_b + b"Z"
    body = part(long_b, [b'content-disposition: form-data; name="f"'], b"v") + b"--" + long_b + b"--"
    write("fuzz_mp", "06-boundary-70-specials", mp(0x02, long_b, body))
    body = part(b"-", [b'Content-Disposition: form-data; name="a"'], b"---\r\n-\r\n--x") + b"-----"
    write("fuzz_mp", "07-boundary-1-char", mp(0x00, b"-", body))
    body = part(b, [b'Content-Disposition: form-data; name="file"; filename="t"'], b"truncated")
    write("fuzz_mp", "08-no-close-delimiter", mp(0x03, b, body))
    many = b"".join(part(b, [b'Content-Disposition: form-data; name="f%d"' % i], b"%d" % i)
                    for i in range(6)) + b"--" + b + b"--\r\n"
    write("fuzz_mp", "09-small-limits-many-parts", mp(0x85, b, many))
    write("fuzz_mp", "10-callback-refuses", mp(0x51, b, two))
    bad = (part(b, [b'Content-Disposition: form-data; name="a"',
                    b'content-disposition: form-data; name="b"'], b"dup")
           + b"--" + b + b"--")
    write("fuzz_mp", "11-duplicate-header", mp(0x01, b, bad))
    bad = (part(b, [b'Content-Disposition: form-data; name="file"',
                    b"Content-Transfer-Encoding: base64"], b"aGk=")
           + b"--" + b + b"--")
    write("fuzz_mp", "13-transfer-encoding", mp(0x02, b, bad))
    crs = part(b, [b'Content-Disposition: form-data; name="file"; filename="cr"'],
               b"\r" * 40 + b"\r\n" * 10 + b"\r\n--" + b[:5]) + b"--" + b + b"--\r\n"
    write("fuzz_mp", "12-cr-runs", mp(0x00, b, crs))
    win = part(b, [b'Content-Disposition: form-data; name="file"; '
                   b'filename="C:\\Users\\ana\\r%22q%22%0D%0a.pdf"'], b"x")
    win += b"--" + b + b"--\r\n"
    write("fuzz_mp", "14-windows-path-name", mp(0x03, b, win))


# ---- fuzz_reader ----

def stored(plain, datakey=None, iv=None):
    datakey = datakey if datakey is not None else bytes(range(0x80, 0xc0))
    iv = iv if iv is not None else bytes(range(0xa0, 0xb0))
    header = MAGIC + KEK_ID + aes_key_wrap(KEK, datakey) + iv
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plain) + padder.finalize()
    enc = Cipher(algorithms.AES(datakey[:32]), modes.CBC(iv)).encryptor()
    ct = enc.update(padded) + enc.finalize()
    tag = hmac.new(datakey[32:], header + ct, hashlib.sha256).digest()
    return header + ct + tag


def reader_seeds():
    write("fuzz_reader", "01-raw-valid-empty", b"\x00" + stored(b""))
    write("fuzz_reader", "02-raw-valid-text", b"\x00" + stored(b"hello, stored world\n"))
    write("fuzz_reader", "03-raw-valid-2keks", b"\x04" + stored(bytes(range(256)) * 3))
    write("fuzz_reader", "04-raw-short", b"\x00" + MAGIC + KEK_ID + b"\x00" * 40)
    write("fuzz_reader", "05-raw-bad-magic", b"\x00" + b"SECUPLD\x02" + stored(b"x")[8:])
    write("fuzz_reader", "06-keyed-random", b"\x01" + bytes((i * 37) & 0xff for i in range(152)))
    write("fuzz_reader", "07-mutate-none", b"\x02\x04")
    # xor a ciphertext byte, then set a tag byte of the 4099-byte file
    write("fuzz_reader", "08-mutate-xor-set", b"\x02\x05" + b"\x00\x00\x70\x01" + b"\x01\x10\x00\x41")
    write("fuzz_reader", "09-mutate-truncate-append", b"\x06\x02" + b"\x02\x00\x98\x00" + b"\x03\x00\x00\x0f")
    write("fuzz_reader", "10-mutate-big-header", b"\x02\x06" + b"\x00\x00\x10\x80")
    pad_ok = b"sixteen bytes!!!" + b"ok" + b"\x0e" * 14
    write("fuzz_reader", "11-forge-valid-padding", b"\x03\x00" + bytes(16) + pad_ok)
    pad_bad = b"sixteen bytes!!!" + b"bad padding" + b"\x05\x05\x05\x04\x05"
    write("fuzz_reader", "12-forge-bad-padding", b"\x07\x00" + bytes(range(16)) + pad_bad)
    write("fuzz_reader", "13-forge-bad-tag", b"\x03\x01" + bytes(16) + b"\x10" * 16)
    write("fuzz_reader", "14-forge-zero-pad", b"\x03\x00" + bytes(16) + b"A" * 15 + b"\x00")


# ---- fuzz_keyfile ----

def keyfile_seeds():
    k = b"00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF"
    write("fuzz_keyfile", "01-valid", k)
    write("fuzz_keyfile", "02-valid-lf", k + b"\n")
    write("fuzz_keyfile", "03-valid-crlf", k + b"\r\n")
    write("fuzz_keyfile", "04-two-lf", k + b"\n\n")
    write("fuzz_keyfile", "05-short", k[:63] + b"\n")
    write("fuzz_keyfile", "06-long", k + b"0\n")
    write("fuzz_keyfile", "07-non-hex", k[:10] + b"g" + k[11:])
    write("fuzz_keyfile", "08-empty", b"")
    write("fuzz_keyfile", "09-cr-only", k + b"\r")
    write("fuzz_keyfile", "10-space", b" " + k)
    write("fuzz_keyfile", "11-huge", k * 5)
    write("fuzz_keyfile", "12-nul", k[:32] + b"\x00" + k[33:])


# ---- fuzz_headers: value NUL pattern ----

def headers_seeds():
    seeds = [
        b'multipart/form-data; boundary="AaB03x"\x00multipart/*',
        b"form-data; name=\"file\"; filename=\"C:\\\\docs\\\\r\xc3\xa9sum\xc3\xa9.pdf\"",
        b"attachment; filename=\"x.txt\"; filename*=UTF-8''%E2%82%AC%20rates.txt",
        b"iso-8859-1'en'%A3%20rates",
        b"sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:, sha-512=:" + b"A" * 86 + b"==:",
        b"unknown=:AAAA:, md5=(1 2 ?1);x=1.5, sha-256=\"str\\\"\"",
        b"XrY7u+Ae7tCTyyK7j1rNww==",
        b"../../etc/\x01passwd\x7f\xff\xc3(\xe2\x82\xac" + b"\xf0\x9f\x98\x80" * 70,
        b"image/PNG ; charset=x\x00IMAGE/png",
        b"text/plain\x00*/*",
        b"a; b=\"unterminated",
        b"x; " + b"; ".join(b"p%d=v" % i for i in range(70)),
        b'attachment; filename="..\\..\\windows\\evil.txt"',
        b'form-data; name="file"; filename="\\\\server\\share\\r\xc3\xa9sum\xc3\xa9 '
        b'%22q%22%0d%0A\\"x\\\\.txt"',
    ]
    seeds += [
        # tus: Upload-Metadata, Upload-Checksum, numbers, the id in a URL
        b"filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,filetype YXBwbGljYXRpb24vcGRm,is_confidential",
        b"  filename YQFiDQoudHh0 ,, filename Li4vLi4vZXRjL3Bhc3N3ZA==,filetype YR==YWJj",
        b"sha1 2jmj7l5rSw0yVb/vlWAYkK/YBwk=",
        b"sha256 47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
        b"0009223372036854775807",
        b"/api/tus/0123456789abcdef0123456789abcdef",
    ]
    for i, s in enumerate(seeds, 1):
        write("fuzz_headers", "%02d" % i, s)


# ---- fuzz_range: size (8 bytes, shifted by byte 0 & 63), Range NUL If-Range NUL If-None-Match ----

def range_seeds():
    import struct
    tag = b'"00112233445566778899aabbccddeeff"'
    def seed(size, rng, ifr=None, inm=None):
        # shifted right by 6 (the low bits of byte 0) in the target
        v = struct.pack("<Q", (size << 6) | 6)
        if ifr is not None or inm is not None:
            rng += b"\x00" + (ifr or b"")
        if inm is not None:
            rng += b"\x00" + inm
        return v + rng
    seeds = [
        seed(1000, b"bytes=0-499"),
        seed(1000, b" BYTES= 500- \t", tag),
        seed(1000, b"bytes=-18446744073709551609", b"W/" + tag),
        seed(1, b"bytes=9223372036854775808-18446744073709551610"),
        seed(0, b"bytes=0-0,5-6", None, b'W/"x", ' + tag + b" ,*"),
        seed(77, b"bytes=20-10", None, b'"a,b" (c, d), ' + tag),
        seed(77, b"bytes=0-" + b"0" * 40 + b"1", None, b'"x\\", ' + tag),
    ]
    for i, s in enumerate(seeds, 1):
        write("fuzz_range", "%02d" % i, s)


# ---- fuzz_segr: format v2, read as id FZ_ID of fuzz_segr.c ----

SEGR_ID = bytes.fromhex("00112233445566778899aabbccddeeff")


def stored2(plain, segsize=4096):
    """A v2 file (su_seg.h's layout) under KEK, for the raw mode."""
    import struct
    dk, nonce = os.urandom(64), os.urandom(16)
    h = (b"SECUPLD\x02" + KEK_ID + aes_key_wrap(KEK, dk)
         + struct.pack(">I", segsize) + nonce)
    out = h + hmac.new(dk[32:], b"\x01" + SEGR_ID + h, hashlib.sha256).digest()
    chunks = [plain[i:i + segsize] for i in range(0, len(plain), segsize)] or [b""]
    for i, c in enumerate(chunks):
        last = i == len(chunks) - 1
        if last:
            p = padding.PKCS7(128).padder()
            c = p.update(c) + p.finalize()
        iv = os.urandom(16)
        e = Cipher(algorithms.AES(dk[:32]), modes.CBC(iv)).encryptor()
        ct = e.update(c) + e.finalize()
        msg = (b"\x02" + SEGR_ID + nonce + struct.pack(">Q", i) + bytes([last])
               + iv + ct)
        out += iv + ct + hmac.new(dk[32:], msg, hashlib.sha256).digest()
    return out


def segr_seeds():
    write("fuzz_segr", "01-raw-empty", b"\x00" + stored2(b""))
    write("fuzz_segr", "02-raw-3seg", b"\x08" + stored2(os.urandom(3 * 4096 + 5)))
    write("fuzz_segr", "03-raw-keyed-short", b"\x04" + os.urandom(200))
    write("fuzz_segr", "04-mutate-none", b"\x01\x04")
    write("fuzz_segr", "05-mutate-xor", b"\x09\x04" + b"\x00\x10\x00\x01")
    write("fuzz_segr", "06-mutate-truncate", b"\x01\x03" + b"\x02\x00\x40\x00")
    # forge: flag, index change, length per segment
    write("fuzz_segr", "07-forge-valid", b"\x02" + b"\x00\x00\x00" * 3 + b"\x01\x00\x07")
    write("fuzz_segr", "08-forge-last-early", b"\x02" + b"\x01\x00\x00" + b"\x01\x00\x07")
    write("fuzz_segr", "09-forge-index", b"\x0a" + b"\x00\x81\x00" + b"\x01\x00\x07")
    write("fuzz_segr", "10-forge-pending", b"\x02" + b"\x00\x00\x00" + b"\x02\x00\x07")


def main():
    for t in ("fuzz_mp", "fuzz_reader", "fuzz_keyfile", "fuzz_headers", "fuzz_segr",
              "fuzz_range"):
        shutil.rmtree(os.path.join(CORPUS, t), ignore_errors=True)
    mp_seeds()
    reader_seeds()
    keyfile_seeds()
    headers_seeds()
    segr_seeds()
    range_seeds()


if __name__ == "__main__":
    main()
