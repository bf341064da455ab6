"""Fixtures for the secupload command-line tool tests."""

import os
import uuid

import pytest

from cli_helpers import Keys, RedisServer, Store, cli_path


@pytest.fixture(scope="session", autouse=True)
def _binary_exists():
    if not os.access(cli_path(), os.X_OK):
        pytest.fail("%s is not built (run make, or set SECUPLOAD_CLI)" % cli_path(),
                    pytrace=False)


@pytest.fixture
def keys(tmp_path):
    return Keys(tmp_path / "keys")


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "storage")


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    srv = RedisServer(tmp_path_factory.mktemp("redis"))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def prefix():
    """A prefix of its own for each test, so tests share one server safely."""
    return "t%s:" % uuid.uuid4().hex[:12]
