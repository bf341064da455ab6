"""Fixtures for the tests of the project's scripts (scripts/serve, and the
pieces of scripts/test that start servers as another user)."""

import os
import shutil
import tempfile

import pytest

from checkout_util import Checkout, need_root_and_server_user


@pytest.fixture(scope="session")
def checkout():
    """A built copy of this checkout that www-data cannot reach (see
    checkout_util)."""
    need_root_and_server_user()
    co = Checkout()
    try:
        co.make()
        yield co
    finally:
        co.cleanup()


@pytest.fixture
def open_dir():
    """A temporary directory the server's user (www-data) can reach."""
    d = tempfile.mkdtemp(prefix="secupload-open-")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)
