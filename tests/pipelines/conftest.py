"""Fixtures for the pipelines' tests: a machine with no network (tiny kit: tests/conftest.py)."""

import socket

import pytest

from pipelines import cache


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to reach another machine fails the test instead of downloading."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    cache.clear()
    yield
    cache.clear()
