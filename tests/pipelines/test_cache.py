"""pipelines.cache: a model is loaded once per file version."""

import os

from pipelines import cache


def test_loads_once_and_reloads_when_the_file_changes(tmp_path):
    cache.clear()
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"v1")
    loads = []

    def loader(p):
        loads.append(p.read_bytes())
        return object()

    first = cache.cached_model(path, loader)
    assert cache.cached_model(path, loader) is first
    assert loads == [b"v1"]
    path.write_bytes(b"version 2")
    os.utime(path, ns=(1, 1))
    assert cache.cached_model(path, loader) is not first
    assert loads == [b"v1", b"version 2"]


def test_keeps_at_most_a_few_models(tmp_path):
    cache.clear()
    paths = []
    for i in range(cache.MAX_MODELS + 1):
        paths.append(tmp_path / f"m{i}")
        paths[-1].write_bytes(b"x")
    loads = []
    for path in paths:
        cache.cached_model(path, lambda p: loads.append(p) or p)
    cache.cached_model(paths[0], lambda p: loads.append(p) or p)  # evicted: loaded again
    assert loads.count(paths[0]) == 2
