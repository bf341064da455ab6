"""`make install` and Debian's a2enmod: the installed files, enabled in a copy
of Debian's /etc/apache2 with the very command the docs give
(`a2enmod secupload_module`), make a configuration Apache accepts."""

import os
import pathlib
import shutil
import subprocess
import tempfile

import pytest

import secupload_harness as H

BUILD = os.path.dirname(os.path.dirname(os.path.abspath(H.module_path())))


def _run(cmd, env=None, **kw):
    return subprocess.run(cmd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=120, **kw)


@pytest.fixture
def staged(module_so):
    if not os.path.isdir("/etc/apache2/mods-available"):
        pytest.skip("Debian's /etc/apache2 is not installed")
    root = tempfile.mkdtemp(prefix="secupload-install-")
    try:
        r = _run(["make", "-C", BUILD, "install", "DESTDIR=" + root])
        assert r.returncode == 0, r.stdout[-3000:]
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_make_install_lays_out_files(staged):
    lib = _run(["apxs", "-q", "LIBEXECDIR"]).stdout.strip()
    so = staged + lib + "/mod_secupload.so"
    assert os.path.isfile(so)
    avail = staged + "/etc/apache2/mods-available"
    with open(avail + "/secupload_module.load") as f:
        assert f.read().strip() == \
            "LoadModule secupload_module %s/mod_secupload.so" % lib
    assert os.path.isfile(avail + "/secupload_module.conf")
    tools = [os.path.join(d, "secupload") for d, _, fs in os.walk(staged)
             if "secupload" in fs and d.endswith("/bin")]
    assert tools, "the secupload tool was not installed"
    assert os.access(tools[0], os.X_OK)
    # the man pages, the docs they name and the example site
    found = {os.path.relpath(os.path.join(d, f), staged)
             for d, _, fs in os.walk(staged) for f in fs}
    for tail in ("/man/man1/secupload.1", "/man/man5/mod_secupload.5",
                 "/README.md", "/docs/configuration.md", "/docs/api.md",
                 "/examples/secupload-site.conf",
                 "/examples/secupload-example.conf",
                 "/examples/upload/index.html"):
        assert any(p.endswith(tail) for p in found), (tail, sorted(found))
    # the example page's snippet names where the page was installed
    snippet = [p for p in found if p.endswith("/examples/secupload-example.conf")]
    with open(os.path.join(staged, snippet[0])) as f:
        alias = [ln.split() for ln in f if ln.startswith("Alias ")]
    assert len(alias) == 1 and alias[0][1] == "/secupload-example/", alias
    assert os.path.isfile(staged + alias[0][2] + "index.html"), alias


def test_a2enmod_in_a_copy_of_etc_apache2(staged, module_so):
    work = tempfile.mkdtemp(prefix="secupload-etc-")
    try:
        conf = work + "/apache2"
        shutil.copytree("/etc/apache2", conf, symlinks=True)
        avail = staged + "/etc/apache2/mods-available"
        for name in ("secupload_module.load", "secupload_module.conf"):
            shutil.copy(avail + "/" + name, conf + "/mods-available/" + name)
        # load the module under test rather than a system-wide install
        with open(conf + "/mods-available/secupload_module.load", "w") as f:
            f.write("LoadModule secupload_module %s\n" % module_so)
        # a2enmod's state (enabled_by_admin/...) stays in the copy too
        env = dict(os.environ, APACHE_CONFDIR=conf,
                   APACHE_STATE_DIRECTORY=work + "/state")
        # the docs' command, word for word (a name ending in "load" would be
        # cut short by a2enmod's suffix pattern)
        r = _run(["a2enmod", "secupload_module"], env=env)
        assert r.returncode == 0 and "does not exist" not in r.stdout, r.stdout
        assert "Enabling module secupload_module." in r.stdout, r.stdout
        for name in ("secupload_module.load", "secupload_module.conf"):
            assert os.path.islink(conf + "/mods-enabled/" + name)
        # Debian's apache2ctl reads envvars from APACHE_CONFDIR; the server
        # gets the sanitizer runtime when the module was built with it
        senv = dict(H.server_env(), APACHE_CONFDIR=conf)
        # a private run dir: /run/apache2 exists only once Debian's service
        # has started since boot, and is not this test's to create
        os.mkdir(work + "/run")
        r = _run(["bash", "-c", ". %s/envvars && export APACHE_RUN_DIR=%s/run "
                  "&& exec /usr/sbin/apache2 -d %s -t" % (conf, work, conf)], env=senv)
        assert r.returncode == 0 and "Syntax OK" in r.stdout, r.stdout
        r = _run(["bash", "-c", ". %s/envvars && export APACHE_RUN_DIR=%s/run "
                  "&& exec /usr/sbin/apache2 -d %s -M" % (conf, work, conf)], env=senv)
        assert "secupload_module" in r.stdout, r.stdout
        r = _run(["a2dismod", "secupload_module"], env=env)
        assert r.returncode == 0, r.stdout
        for name in ("secupload_module.load", "secupload_module.conf"):
            assert not os.path.lexists(conf + "/mods-enabled/" + name)
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def scratch():
    root = tempfile.mkdtemp(prefix="secupload-site-")
    os.chmod(root, 0o755)   # the server's user reaches the storage dir
    try:
        yield pathlib.Path(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_example_site_is_accepted(staged, module_so, scratch):
    """The example site, with its paths pointed at a scratch directory, in a
    copy of Debian's /etc/apache2 with the module enabled: apache2 -t."""
    tmp_path = scratch
    conf = str(tmp_path / "apache2")
    shutil.copytree("/etc/apache2", conf, symlinks=True)
    ex = [os.path.join(d, "secupload-site.conf") for d, _, fs in os.walk(staged)
          if "secupload-site.conf" in fs]
    assert ex, "the example site was not installed"
    with open(ex[0]) as f:
        site = f.read()
    store, keys = tmp_path / "store", tmp_path / "keys"
    store.mkdir()
    H._chown_server_user(str(store))
    keys.mkdir()
    (keys / "files-kek-1.hex").write_text(os.urandom(32).hex() + "\n")
    os.chmod(keys / "files-kek-1.hex", 0o400)
    (keys / "htpasswd").write_text("")
    site = site.replace("/var/lib/secupload/files.example.org", str(store))
    site = site.replace("/etc/apache2/secupload", str(keys))
    assert "/etc/apache2/secupload" not in site
    with open(conf + "/sites-available/secupload-site.conf", "w") as f:
        f.write(site)
    with open(conf + "/mods-available/secupload_module.load", "w") as f:
        f.write("LoadModule secupload_module %s\n" % module_so)
    env = dict(os.environ, APACHE_CONFDIR=conf,
               APACHE_STATE_DIRECTORY=str(tmp_path / "state"))
    for cmd in (["a2enmod", "secupload_module"], ["a2ensite", "secupload-site"]):
        r = _run(cmd, env=env)
        assert r.returncode == 0, r.stdout
    os.mkdir(str(tmp_path / "run"))
    senv = dict(H.server_env(), APACHE_CONFDIR=conf)
    r = _run(["bash", "-c", ". %s/envvars && export APACHE_RUN_DIR=%s/run "
              "&& exec /usr/sbin/apache2 -d %s -t -D DUMP_VHOSTS"
              % (conf, tmp_path, conf)], env=senv)
    assert r.returncode == 0, r.stdout
    assert "namevhost files.example.org" in r.stdout, r.stdout
