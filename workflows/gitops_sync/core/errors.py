"""The whole exception tree of gitops-sync, in one place.

    GitopsSyncError                  base; ``str(e)`` is one clear line for a person
    ├── UsageError                   invalid arguments or settings        (permanent)
    ├── SourceError                  the git side
    │   ├── RepositoryUnreachable    cannot reach/fetch the repository    (transient)
    │   ├── NotARepository           the source is not a git repository   (permanent)
    │   └── UnknownRef               branch/tag/commit does not exist     (permanent)
    ├── WorkspaceError               the destination side
    │   ├── WorkspaceNotWritable     permission / read-only / missing     (permanent)
    │   └── CaseConflict             two paths differ only in case on a
    │                                case-insensitive workspace           (permanent)
    ├── StorageError                 queues/tables/blobs/Azure Files busy (transient)
    ├── ConflictError                another sync holds the workspace     (transient)
    ├── NotFound                     no such function / version (404)     (permanent)
    └── Refused                      the request contradicts the state,
                                     e.g. deleting the active version (409) (permanent)

``permanent`` tells a runtime what to do, as Flux's stalling/waiting split does:
a permanent error needs a person (record it, do not retry); a transient one is
retried by the queue. Messages never carry URL query strings or credentials
(see ``core.redact``).
"""

from __future__ import annotations


class GitopsSyncError(Exception):
    """Base of every error gitops-sync raises on purpose."""

    permanent: bool = False


class UsageError(GitopsSyncError):
    permanent = True


class SourceError(GitopsSyncError):
    pass


class RepositoryUnreachable(SourceError):
    permanent = False


class NotARepository(SourceError):
    permanent = True


class UnknownRef(SourceError):
    permanent = True


class WorkspaceError(GitopsSyncError):
    pass


class WorkspaceNotWritable(WorkspaceError):
    permanent = True


class CaseConflict(WorkspaceError):
    permanent = True


class StorageError(GitopsSyncError):
    permanent = False


class ConflictError(GitopsSyncError):
    permanent = False


class NotFound(GitopsSyncError):
    permanent = True


class Refused(GitopsSyncError):
    permanent = True
