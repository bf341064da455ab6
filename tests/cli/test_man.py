"""The man pages secupload(1) and mod_secupload(5), made from docs/cli.md and
docs/configuration.md: man renders each without a warning on an 80-column
terminal, the NAME line is what whatis shows, and they cover every command
the tool knows and every directive the module has."""

import glob
import os
import re
import subprocess

import pytest

from cli_helpers import cli_path

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PAGES = {"secupload.1": "secupload - ", "mod_secupload.5": "mod_secupload - "}


def man_dir():
    return os.environ.get("SECUPLOAD_MAN_DIR",
                          os.path.join(os.path.dirname(cli_path()), "man"))


def render(page):
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8")
    r = subprocess.run(["man", "--warnings", "-l", os.path.join(man_dir(), page)],
                       env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout, r.stderr


@pytest.mark.parametrize("page", sorted(PAGES))
def test_renders_without_warnings(page):
    out, err = render(page)
    assert err == "", err
    assert len(out.splitlines()) > 100, out


@pytest.mark.parametrize("page", sorted(PAGES))
def test_name_line_and_paths(page):
    path = os.path.join(man_dir(), page)
    r = subprocess.run(["lexgrog", path], stdout=subprocess.PIPE, text=True)
    assert r.returncode == 0 and ': "%s' % PAGES[page] in r.stdout, r.stdout
    with open(path) as f:
        text = f.read()
    assert ".TH \"%s\" \"%s\"" % tuple(page.upper().rsplit(".", 1)) in text
    # the installed docs' directory is filled in; no link to a source file
    assert "{docdir}" not in text
    assert not re.search(r"\(\.*/?[\w-]+\.md", text), "a relative link is left"
    assert re.search(r"/doc/[\w.-]+/docs/", text)


def test_every_command_of_the_tool_has_a_section():
    r = subprocess.run([cli_path(), "--help"], stdout=subprocess.PIPE, text=True)
    commands = re.findall(r"^  ([a-z]+)  ", r.stdout.split("Commands:")[1]
                          .split("\n\n")[0], re.M)
    assert len(commands) >= 5, r.stdout
    out, _ = render("secupload.1")
    sections = set(re.findall(r"^([A-Z][A-Z ]+)$", out, re.M))
    for name in ("NAME", "SYNOPSIS", "DESCRIPTION", "EXIT STATUS", "SEE ALSO"):
        assert name in sections, sections
    for cmd in commands:
        assert cmd.upper() in sections, (cmd, sections)


def test_every_directive_of_the_module_is_described():
    names = set()
    for src in glob.glob(TOP + "/*.c") + glob.glob(TOP + "/src/*.c"):
        with open(src, errors="replace") as f:
            names |= set(re.findall(r'AP_INIT_\w+\(\s*"(SecUpload\w+)"', f.read()))
    assert len(names) >= 14, names
    out, _ = render("mod_secupload.5")
    # each is an entry of the directive lists: the name alone on its line
    entries = set(re.findall(r"^ {7}(SecUpload\w+)$", out, re.M))
    assert names <= entries, names - entries
