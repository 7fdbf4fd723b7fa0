"""Fixtures for the pipelines' tests: a machine with no network (tiny kit: tests/conftest.py),
a real photograph and a plain analysed T-shirt."""

import socket

import pytest
from PIL import Image
from skimage import data

from pipelines import cache
from pipelines.garment import analyze_garment
from pipelines.samples import draw_product_shot
from pipelines.tryon import GarmentInput


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


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    """The astronaut from scikit-image: a real photograph of a person."""
    return Image.fromarray(data.astronaut())


@pytest.fixture(scope="module")
def tee() -> GarmentInput:
    """A drawn T-shirt product shot, analysed (a test module may define its own)."""
    shot = draw_product_shot("tshirt", size=(384, 512))
    return GarmentInput(analyze_garment(shot.image, "upper"), colour="blue")
