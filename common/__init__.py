"""What both apps use: where files live and how they are named, cleaning of untrusted uploads,
the API's error shape and throttles, the client's address and the merchant role.

A leaf: it imports neither ``catalog`` nor ``tryon`` (``tests/tryon/test_settings_and_imports.py``
checks), and importing it never builds the Celery app.
"""
