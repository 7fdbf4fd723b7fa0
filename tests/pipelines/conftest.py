"""Fixtures for the pipelines' tests: the tiny model kit, and a machine with no network."""

import socket
from pathlib import Path

import pytest

from pipelines import cache
from pipelines.tiny import make_tiny


@pytest.fixture(scope="session")
def tiny_kit(tmp_path_factory) -> Path:
    """A MODELS_DIR holding the tiny kit, built once for the whole test session."""
    return make_tiny(tmp_path_factory.mktemp("models"))


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
