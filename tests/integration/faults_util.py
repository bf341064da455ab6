"""Helpers for the fault tests (test_faults.py): a Stack whose Redis takes
extra arguments (append-only file, DEBUG) and can be killed outright, whose
Apache runs with extra environment variables (fault injection), and the
checks for many concurrent uploads whose outcomes are only known afterwards:
the storage dir and Redis must hold exactly what the 201s promised."""

import hashlib
import os
import signal
import subprocess

import secupload_harness as H
from secupload_stack import Stack, running


class ExtraRedis(H.RedisServer):
    """A redis-server with extra command-line arguments (later arguments
    override the harness's defaults, e.g. --appendonly yes) that can be
    killed outright."""

    def __init__(self, workdir, port, password=None, extra_args=()):
        super().__init__(workdir, port=port, password=password,
                         extra_args=extra_args)

    def kill(self):
        """SIGKILL by the pid we started: no shutdown, no final save."""
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
            self.proc = None


class EnvApache(H.Apache):
    """An Apache whose environment has extra variables (set before start)."""

    def __init__(self, site, conf_path, env=None):
        super().__init__(site, conf_path)
        self.extra_env = dict(env or {})

    def launch(self):
        env = H.server_env()
        env.update(self.extra_env)
        out = open(self.outlog, "ab")
        try:
            self.proc = subprocess.Popen(
                [H.APACHE_BIN, "-f", self.conf_path, "-DFOREGROUND"],
                env=env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, cwd=self.site.root,
                start_new_session=True)
        finally:
            out.close()
        return self

    def signal(self, sig):
        """Signal the parent (apache2 -k graceful / restart semantics)."""
        os.kill(self.proc.pid, sig)

    def wait_serving(self, timeout):
        return H._wait_for(lambda: self.running and self._serving(), timeout,
                           0.1)


class FaultStack(Stack):
    """A Stack with ExtraRedis and EnvApache in place of the harness's."""

    def __init__(self, tag, redis_args=(), apache_env=None, extra="",
                 redis_timeout=2000):
        super().__init__(tag, extra=extra, redis_timeout=redis_timeout)
        self.redis = ExtraRedis(self.site.root, self.redis.port,
                                extra_args=redis_args)
        # the Apache the base class made never runs: keep it out of the
        # per-test log check
        H.ALL_APACHES.remove(self.apache)
        self.apache = EnvApache(self.site, self.apache.conf_path, apache_env)

    def restart_apache(self, env):
        """Stop Apache, change its environment, start it again."""
        self.apache.stop()
        self.apache.extra_env = dict(env or {})
        self.apache.start()


def own_stack(request, tag, **kw):
    """Generator body of a module-scoped fixture."""
    s = FaultStack(tag, **kw)
    yield from running(request, s)


# --------------------------------------------------------------------------
# Many uploads at once


class Outcome:
    """One upload: what was sent and how it ended."""

    def __init__(self, plain, body_len):
        self.plain = plain
        self.body_len = body_len
        self.sent = 0            # body bytes handed to the socket
        self.status = None       # HTTP status, or None
        self.resp = None         # RawResponse / requests.Response
        self.error = None        # the exception of a failed exchange
        self.t_start = None
        self.t_done = None

    @property
    def complete_body(self):
        return self.sent >= self.body_len

    def __repr__(self):
        return "<Outcome %s sent %d/%d err=%r>" % (
            self.status, self.sent, self.body_len, self.error)


def stored_id(outcome):
    resp = outcome.resp
    if hasattr(resp, "json"):
        return resp.json()["id"]
    raise AssertionError("no response")


def rel_of(fid):
    return "%s/%s.enc" % (fid[:2], fid)


def audit_stored(stack, fid):
    return [e for e in stack.rv.audit_all()
            if e.get("event") == "upload.stored" and e.get("id") == fid]


def quick_check_stored(stack, rv, o, audit):
    """The essentials of Stack.check_stored for one 201 of a large batch,
    with the audit stream read once for all (audit: id -> entries)."""
    doc = o.resp.json()
    fid = doc["id"]
    assert doc.get("size") == len(o.plain), doc
    assert doc.get("sha256") == hashlib.sha256(o.plain).hexdigest(), doc
    plain, kek = H.decrypt_file(os.path.join(stack.site.storage, rel_of(fid)),
                                stack.keks)
    assert plain == o.plain, "%s does not decrypt to the upload" % fid
    assert kek == stack.kek1
    meta = rv.meta(fid)
    assert meta.get("id") == fid and meta.get("size") == str(len(o.plain)) \
        and meta.get("sha256") == doc["sha256"] \
        and meta.get("path") == rel_of(fid) \
        and meta.get("key_id") == H.key_id(stack.kek1).hex(), meta
    entries = audit.get(fid, [])
    assert len(entries) == 1, "audit entries for %s: %r" % (fid, entries)
    assert entries[0].get("status") == "201", entries
    assert entries[0].get("request_id") == meta.get("request_id"), (
        entries, meta)


def _orphan_report(stack, keys):
    """Who wrote metadata that no stored file backs: its request's log."""
    out = []
    log = stack.apache.log_text().splitlines()
    for k in sorted(keys):
        meta = stack.rv.meta(k[len(stack.prefix + "file:"):])
        rid = meta.get("request_id", "?")
        lines = [ln for ln in log if "[%s]" % rid in ln]
        out.append("%s (request %s): %s" % (k, rid, " | ".join(lines)[-600:]))
    return "\n".join(out)


def check_batch(stack, outcomes, files_before, keys_before, settle=5.0,
                allow_unacknowledged=True, full=None):
    """After a batch of concurrent uploads: every 201 is fully stored (file,
    metadata, audit entry); every failure left nothing. The storage dir holds
    exactly the 201s' files plus, when allow_unacknowledged, files of
    uploads whose whole body was sent but whose answer was lost (the server
    committed, the client never heard): those must be complete and
    consistent too. The 201s in `full` (default: all) get Stack.check_stored,
    the others quick_check_stored. Returns the unacknowledged uploads."""
    ok = [o for o in outcomes if o.status == 201]
    ok_ids = {stored_id(o) for o in ok}
    want_files = set(files_before) | {rel_of(i) for i in ok_ids}

    def settled():
        return set(stack.files()) == want_files
    H._wait_for(settled, settle)
    now = set(stack.files())
    strays = sorted(set(H.stray_files(stack.site.storage))
                    - set(files_before))
    assert not strays, "temp/stray files left behind: %r" % strays
    missing = sorted(want_files - now)
    assert not missing, "files of 201s missing: %r" % missing
    rv = stack.rv
    audit = {}
    for e in rv.audit_all():
        if e.get("event") == "upload.stored":
            audit.setdefault(e.get("id"), []).append(e)
    for o in ok:
        if full is None or o in full:
            stack.check_stored(o.resp, o.plain, body_len=o.body_len)
        else:
            quick_check_stored(stack, rv, o, audit)

    # files no 201 accounts for
    extra = sorted(now - want_files)
    unacked = []
    failed = [o for o in outcomes if o.status != 201]
    by_sha = {hashlib.sha256(o.plain).hexdigest(): o for o in failed}
    for rel in extra:
        fid = os.path.basename(rel)[:-len(".enc")]
        plain, _ = H.decrypt_file(os.path.join(stack.site.storage, rel),
                                  stack.keks)
        o = by_sha.get(hashlib.sha256(plain).hexdigest())
        meta = rv.meta(fid)
        assert allow_unacknowledged and o is not None \
            and o.complete_body and o.status is None, \
            "a failed upload left a file: %s (outcome %r, metadata %r)" % (
                rel, o, meta)
        # the server committed it: all of it, or it would be half-kept
        assert meta and meta.get("size") == str(len(plain)), (rel, meta)
        assert len(audit_stored(stack, fid)) == 1, rel
        unacked.append((fid, o))
    keys_want = set(keys_before) | {
        stack.prefix + "file:" + i for i in ok_ids} | {
        stack.prefix + "file:" + fid for fid, _ in unacked}
    keys = rv.file_keys()
    assert not keys - keys_want, "metadata without a stored file " \
        "(the upload was not answered 201):\n" + _orphan_report(
            stack, keys - keys_want)
    assert not keys_want - keys, "metadata missing: %r" % sorted(
        keys_want - keys)
    return unacked

