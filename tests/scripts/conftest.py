"""Fixtures for the tests of the project's scripts (scripts/serve, and the
pieces of scripts/test that start servers as another user)."""

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
