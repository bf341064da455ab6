"""Settings merge from the outer section to the inner one, each on its own:
a virtual host that sets only its Redis database and prefix keeps the main
server's storage, keys, Redis address and timeout; a <Location> takes the
upload and file settings of its host and overrides only those it sets; a
setting nobody set has its default (docs/configuration.md)."""

import secrets
from contextlib import contextmanager

import pytest
import requests

import secupload_harness as H
from secupload_stack import Stack, running

VH = "vh.test"
VH_DB = 3
VH_PREFIX = "vh%s:" % secrets.token_hex(3)

# The first virtual host is the default: it stands for the
# main server, so that requests without Host: vh.test are served as before.
VHOSTS = """
<VirtualHost *:*>
    ServerName 127.0.0.1
</VirtualHost>
<VirtualHost *:*>
    ServerName %(vh)s
    SecUploadRedisDatabase %(db)d
    SecUploadRedisPrefix "%(prefix)s"
    SecUploadMaxSize 2K
    SecUploadFieldName doc
    SecUploadOwnerOnly On
    <Location /vup/>
        SetHandler secupload
        SecUploadEnable upload
    </Location>
    <Location /vup/big/>
        SecUploadMaxSize 4K
    </Location>
    <Location /vfiles/>
        SetHandler secupload-files
        SecUploadEnable files
    </Location>
</VirtualHost>
"""


@pytest.fixture(scope="module")
def ms(module_so, request):
    s = Stack("merge", extra=VHOSTS % {"vh": VH, "db": VH_DB,
                                       "prefix": VH_PREFIX})
    yield from running(request, s)


@contextmanager
def as_vhost(s):
    """The stack's checks, pointed at the virtual host's Redis records."""
    saved = s.redis_db, s.prefix
    s.redis_db, s.prefix = VH_DB, VH_PREFIX
    try:
        yield s
    finally:
        s.redis_db, s.prefix = saved


def vpost(s, data, path, field):
    body, ctype = H.multipart([H.file_part(data, "m.bin", name=field)])
    return requests.post(s.url(path), data=body, timeout=60,
                         headers={"Content-Type": ctype, "Host": VH}), body


def test_vhost_keeps_main_storage_keys_and_redis_address(ms):
    data = secrets.token_bytes(1000)
    r, body = vpost(ms, data, "/vup/", "doc")
    with as_vhost(ms):
        doc = ms.check_stored(r, data, body_len=len(body))
    # only the virtual host's database and prefix hold it
    assert not ms.rv.meta(doc["id"])


def test_main_server_keeps_its_own_redis_settings(ms):
    data = secrets.token_bytes(3000)   # over the virtual host's 2K
    r = ms.post_raw(data)
    doc = ms.check_stored(r, data)
    with as_vhost(ms):
        assert not ms.rv.meta(doc["id"])


def test_location_takes_host_max_size_and_field(ms):
    data = secrets.token_bytes(3000)
    with as_vhost(ms):
        ms.expect_error(lambda: vpost(ms, data, "/vup/", "doc")[0],
                        413, "too_large")
        ms.expect_error(lambda: vpost(ms, data[:100], "/vup/", "file")[0],
                        400, "bad_request")


def test_inner_location_overrides_only_what_it_sets(ms):
    data = secrets.token_bytes(3000)   # under /vup/big/'s 4K
    r, body = vpost(ms, data, "/vup/big/", "doc")
    with as_vhost(ms):
        ms.check_stored(r, data, body_len=len(body))
        ms.expect_error(lambda: vpost(ms, data[:100], "/vup/big/", "file")[0],
                        400, "bad_request")


def test_location_takes_host_owner_only(ms):
    data = secrets.token_bytes(100)
    r, body = vpost(ms, data, "/vup/", "doc")
    with as_vhost(ms):
        fid = ms.check_stored(r, data, body_len=len(body))["id"]
        mark = ms.rv.audit_mark()
    # no user: SecUploadOwnerOnly On (from the host) shows nobody the file
    got = requests.get(ms.url("/vfiles/" + fid), headers={"Host": VH},
                       timeout=30)
    assert got.status_code == 404, got.text
    with as_vhost(ms):
        denied = H._wait_for(lambda: [e for e in ms.rv.audit_since(mark)
                                      if e.get("event") == "file.denied"], 2.0)
        assert denied and denied[-1].get("id") == fid, denied


def test_default_field_and_size_where_nothing_is_set(ms):
    """The main server sets no SecUploadFieldName or SecUploadMaxSize: the
    defaults ("file", 1 GiB) apply there, not the virtual host's values."""
    data = secrets.token_bytes(5000)
    r, body = ms.post_multipart([H.file_part(data, "d.bin")])
    ms.check_stored(r, data, body_len=len(body))
