"""The local stack: the HTTP API under uvicorn, the queue worker, and ``dev`` (both on Azurite).

Entry points only: ``gitops-sync serve``/``worker``/``dev`` build these from settings.
"""
