"""GitHub webhook deliveries, pure: signature check, push parsing, classification.

Only ``X-Hub-Signature-256`` counts (HMAC-SHA256 of the raw body, compared in
constant time). The payload's clone URL and ``head_commit`` are never read.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: secret -> hex HMAC of a body, computed while it streamed in
Digests = Mapping[str, str]
_BOM = b"\xef\xbb\xbf"

MAX_BODY = 25 * 1024 * 1024  # GitHub caps payloads at 25 MB
_SIGNATURE = re.compile(r"^sha256=([0-9a-fA-F]{64})$")
_COMMIT = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
_ZERO = re.compile(r"^0+$")


class BadDelivery(ValueError):
    """Signed correctly, but not a payload we can act on (answered 400)."""


@dataclass(frozen=True, slots=True)
class Answer:
    """What the webhook answers: an HTTP status and a JSON body (None: empty)."""

    status: int
    body: dict[str, Any] | None = None


UNAUTHORIZED = Answer(401)
TOO_LARGE = Answer(413)
PONG = Answer(200, {"status": "pong"})


def bad_request(reason: str) -> Answer:
    return Answer(400, {"error": reason})


def ignored(reason: str) -> Answer:
    return Answer(200, {"status": "ignored", "reason": reason})


def duplicate(job_id: str) -> Answer:
    return Answer(200, {"status": "duplicate", "job_id": job_id})


def queued(job_id: str, commit: str) -> Answer:
    return Answer(202, {"status": "queued", "job_id": job_id, "commit": commit})


def signature_well_formed(header: str | None) -> bool:
    return header is not None and _SIGNATURE.match(header.strip()) is not None


def sign(secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value GitHub sends for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class StreamSigner:
    """HMAC-SHA256 of a body under each of some secrets, fed chunk by chunk as it arrives."""

    def __init__(self, secrets: Iterable[str | None]) -> None:
        self._macs = {s: hmac.new(s.encode(), digestmod=hashlib.sha256) for s in secrets if s}

    def update(self, chunk: bytes) -> None:
        for mac in self._macs.values():
            mac.update(chunk)

    def digests(self) -> dict[str, str]:
        return {secret: mac.hexdigest() for secret, mac in self._macs.items()}


def signature_valid(
    secret: str | None, body: bytes, header: str | None, digests: Digests | None = None
) -> bool:
    """True only for a well-formed sha256 signature of ``body`` made with ``secret``.

    ``digests`` may hold the body's HMAC under ``secret`` already (see ``StreamSigner``).
    """
    if not secret or header is None:
        return False
    m = _SIGNATURE.match(header.strip())
    if m is None:
        return False
    expected = (digests or {}).get(secret) or hmac.new(
        secret.encode(), body, hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(expected, m.group(1).lower())


def json_object(body: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or None for anything else (invalid, array, bad UTF-8).

    A byte order mark is refused: GitHub never sends one, and JSON forbids it (RFC 8259).
    """
    if body[:3] == _BOM:
        return None
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


def repository_name(payload: dict[str, Any] | None) -> str | None:
    """``repository.full_name`` when present and a string."""
    repo = payload.get("repository") if payload else None
    name = repo.get("full_name") if isinstance(repo, dict) else None
    return name if isinstance(name, str) and name else None


@dataclass(frozen=True, slots=True)
class Push:
    repository: str
    ref: str
    after: str
    deleted: bool


def parse_push(payload: dict[str, Any]) -> Push:
    """The fields of a push the worker needs; ``BadDelivery`` when one is missing."""
    ref, after = payload.get("ref"), payload.get("after")
    repository = repository_name(payload)
    if not isinstance(ref, str) or not ref:
        raise BadDelivery("push without ref")
    if not isinstance(after, str) or not after:
        raise BadDelivery("push without after")
    if repository is None:
        raise BadDelivery("push without repository.full_name")
    after = after.lower()
    deleted = payload.get("deleted") is True or bool(_ZERO.match(after))
    if not deleted and not _COMMIT.match(after):
        raise BadDelivery("push 'after' is not a commit id")
    return Push(repository, ref, after, deleted)


def short(text: str, limit: int = 200) -> str:
    """``text`` cut for an answer or a log line (a sender controls it)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def why_ignored(push: Push, branch: str) -> str | None:
    """Why a push to a connected repository is not synced, or None when it should be."""
    tracked = f"refs/heads/{branch}"
    if push.ref.startswith("refs/tags/"):
        return f"tag {short(push.ref.removeprefix('refs/tags/'))} is not tracked"
    if push.ref != tracked:
        return f"ref {short(push.ref)} is not the tracked branch {branch}"
    if push.deleted:
        # Never sync an empty tree: the workspace keeps its last commit.
        return f"branch {branch} was deleted; the workspace is left as it is"
    return None
