"""``python -m gitops_sync`` is the ``gitops-sync`` command."""

from .cli import main

main()
