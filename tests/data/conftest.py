"""Fixtures for the data tests: a local HTTP server that is always shut down."""

import pytest

from .helpers import LocalServer, start_server


@pytest.fixture
def server():
    state = LocalServer()
    httpd = start_server(state)
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        httpd._reglab_thread.join(timeout=5)
