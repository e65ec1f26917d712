"""gitops-sync: event-driven GitOps sync of a git repository into a workspace.

The package is layered so data flows one way: ``core`` (pure) <- ``adapters``
(one per outside system) <- use cases (``sync``) <- entry points (``cli``, ``http``).
"""

__version__ = "0.1.0"
