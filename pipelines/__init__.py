"""The framework-free generation core: plain values in, plain values out.

Nothing in this package imports Django or Celery, and nothing at import time imports torch:
heavy libraries are imported inside the functions that need them, so the web process can use the
light parts (weights discovery, pose checks) without paying for them.
"""
