"""Self-tests of the harness: these need no module, and show that the checks
the other tests rely on can fail."""

import os
import secrets

import pytest
import requests

import secupload_harness as H


def test_apache_and_redis_start_without_module():
    site = H.Site("bare")
    red = H.RedisServer(site.root)
    apache = None
    try:
        red.start()
        assert red.client().ping()
        conf = site.write_conf(site.conf_text("", with_module=False))
        apache = H.Apache(site, conf).start()
        r = requests.get(apache.url("/hello.txt"), timeout=10)
        assert r.status_code == 200
        assert r.text == "hello from the harness\n"
        # the raw client against a static file
        c = H.RawConn(apache.port)
        c.send(H.request_head("GET", "/hello.txt", [("Connection", "close")]))
        resp = c.read_response()
        c.close()
        assert resp.status == 200 and resp.body == b"hello from the harness\n"
        pid = apache.proc.pid
        assert apache.stop() == 0
        assert not os.path.exists("/proc/%d" % pid) or \
            open("/proc/%d/stat" % pid).read().split()[2] == "Z"
        assert not apache.take_problems()
    finally:
        if apache:
            apache.stop()
        red.stop()
        site.cleanup()


def test_log_check_catches_bad_lines(tmp_path):
    site = H.Site("logcheck")
    try:
        apache = H.Apache(site, "/nonexistent.conf")
        with open(apache.errlog, "w") as f:
            f.write("[x] [core:notice] [pid 1:tid 1] fine\n")
        assert apache.take_problems() == []
        with open(apache.errlog, "a") as f:
            f.write("[x] [secupload:crit] [pid 1:tid 1] bad\n"
                    "==1==ERROR: AddressSanitizer: heap-use-after-free\n"
                    "[x] [core:notice] [pid 1:tid 1] AH00052: child pid 7 "
                    "exit signal Segmentation fault (11)\n")
        assert len(apache.take_problems()) == 3
        assert apache.take_problems() == []  # only new text is looked at
    finally:
        H.ALL_APACHES.remove(apache)
        site.cleanup()


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 1000])
def test_decryptor_round_trip(size):
    kek, other = secrets.token_bytes(32), secrets.token_bytes(32)
    plain = secrets.token_bytes(size)
    blob = H.encrypt_blob(plain, kek)
    assert len(blob) == 104 + (size // 16 + 1) * 16 + 32
    out, used = H.decrypt_blob(blob, [other, kek])
    assert out == plain and used == kek


def test_decryptor_rejects_tampering():
    kek = secrets.token_bytes(32)
    blob = bytearray(H.encrypt_blob(b"x" * 100, kek))
    for pos in (0, 8, 20, 90, 110, len(blob) - 1):
        bad = bytearray(blob)
        bad[pos] ^= 1
        with pytest.raises(H.FormatError):
            H.decrypt_blob(bytes(bad), [kek])
    with pytest.raises(H.FormatError):
        H.decrypt_blob(bytes(blob), [secrets.token_bytes(32)])
    with pytest.raises(H.FormatError):
        H.decrypt_blob(bytes(blob[:-1]), [kek])


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, 8192, 10000])
def test_decryptor2_round_trip(size):
    kek, other = secrets.token_bytes(32), secrets.token_bytes(32)
    fid = secrets.token_hex(16)
    plain = secrets.token_bytes(size)
    blob = H.encrypt_blob2(plain, kek, fid)
    assert len(blob) == H.v2_file_size(size, 4096)
    assert H.v2_geometry(len(blob), 4096)[0] == max(1, -(-size // 4096))
    out, used = H.decrypt_blob(blob, [other, kek], fid)
    assert out == plain and used == kek


def test_decryptor2_rejects_tampering():
    kek, fid = secrets.token_bytes(32), secrets.token_hex(16)
    blob = H.encrypt_blob2(b"x" * 9000, kek, fid)
    seg = 4096 + H.SEG_OVERHEAD
    for pos in (0, 8, 20, 90, 95, 120, 140, 150, 140 + seg + 3, len(blob) - 1):
        bad = bytearray(blob)
        bad[pos] ^= 1
        with pytest.raises(H.FormatError):
            H.decrypt_blob(bytes(bad), [kek], fid)
    s0, s1 = blob[140:140 + seg], blob[140 + seg:140 + 2 * seg]
    for bad in (blob[:-1], blob[:140 + seg],            # truncated
                blob[:140] + s1 + s0 + blob[140 + 2 * seg:],  # reordered
                blob[:140] + blob[140 + seg:]):        # a segment dropped
        with pytest.raises(H.FormatError):
            H.decrypt_blob(bad, [kek], fid)
    with pytest.raises(H.FormatError):
        H.decrypt_blob(blob, [kek], secrets.token_hex(16))  # another id
    with pytest.raises(H.FormatError):
        H.decrypt_blob(blob, [kek])                          # no id


def test_multipart_builder_and_chunker():
    body, ctype = H.multipart([H.field_part("a", "1"),
                               H.file_part(b"DATA", "f.txt", "text/plain")],
                              boundary="XyZ")
    assert ctype == "multipart/form-data; boundary=XyZ"
    assert body == (b'--XyZ\r\nContent-Disposition: form-data; name="a"\r\n'
                    b'\r\n1\r\n--XyZ\r\nContent-Disposition: form-data; '
                    b'name="file"; filename="f.txt"\r\nContent-Type: '
                    b'text/plain\r\n\r\nDATA\r\n--XyZ--\r\n')
    assert H.chunked(b"abcde", [2]) == b"2\r\nab\r\n2\r\ncd\r\n1\r\ne\r\n0\r\n\r\n"
    assert H.content_digest(b"") == \
        "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:"


def test_storage_views(tmp_path):
    (tmp_path / "ab").mkdir()
    fid = "ab" + "0" * 30
    (tmp_path / "ab" / (fid + ".enc")).write_bytes(b"x")
    assert H.stray_files(str(tmp_path)) == []
    (tmp_path / "ab" / ".tmp-123").write_bytes(b"")
    (tmp_path / "cd").mkdir()
    (tmp_path / "cd" / (fid + ".enc")).write_bytes(b"")
    assert sorted(H.stray_files(str(tmp_path))) == sorted(
        ["ab/.tmp-123", "cd/" + fid + ".enc"])
    assert set(H.storage_files(str(tmp_path))) == {
        "ab/" + fid + ".enc", "ab/.tmp-123", "cd/" + fid + ".enc"}
