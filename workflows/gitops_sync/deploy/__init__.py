"""Deploy: every synced function becomes a content-addressed package and an immutable version.

``build`` turns a function's git blobs (and its requirements) into a package;
``reconcile`` compares what git wants with the versions table and acts;
``service`` is what the API offers (list, show, versions, rollback, delete);
``live`` keeps this process's runtime pointed at the active versions (``builtin``);
``functionapp`` activates them on a separate Function App instead.
"""
