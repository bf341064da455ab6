"""Fixtures: a Redis and an Apache with the module, shared by the session,
and the log check run after every test."""

import os

import pytest

import secupload_harness as H
from secupload_stack import Stack, running


def pytest_report_header(config):
    return ["secupload: module=%s exists=%s mpm=%s LD_PRELOAD=%s" % (
        H.module_path(), os.path.exists(H.module_path()), H.mpm(),
        os.environ.get("SECUPLOAD_LD_PRELOAD", ""))]


@pytest.fixture(autouse=True)
def _server_logs_clean(request):
    """After every test: no crit/alert/emerg line, no sanitizer report and no
    crashed child in any server log written since the previous check."""
    yield
    problems = []
    for a in H.ALL_APACHES:
        problems += a.take_problems()
    assert not problems, "server log problems:\n" + "\n".join(problems[:80])


@pytest.fixture(scope="session")
def module_so():
    path = H.module_path()
    if not os.path.exists(path):
        pytest.fail("the module is not built: %s does not exist (build it, or "
                    "set SECUPLOAD_MODULE)" % path, pytrace=False)
    return path


@pytest.fixture(scope="session")
def stack(module_so, request):
    s = Stack("main")
    yield from running(request, s)


@pytest.fixture
def fresh(stack):
    """The session stack, checked to be alive before the test."""
    assert stack.apache.running, "Apache exited: %s" % stack.apache.log_text(
    )[-3000:]
    assert stack.redis.running
    return stack
