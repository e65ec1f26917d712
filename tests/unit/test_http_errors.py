"""One answer policy for exceptions escaping a handler, in Azure and under the local server."""

from __future__ import annotations

import json
import logging

import pytest
from starlette.requests import ClientDisconnect

from gitops_sync.core.errors import ConflictError, NotARepository, StorageError, UsageError
from gitops_sync.http.errors import answer_for

SECRET = "s3cr3t-value-123"


@pytest.mark.parametrize(
    ("exc", "status", "retry_after", "error", "logged"),
    [
        (UsageError(f"bad prefix {SECRET}"), 400, None, "bad prefix ***", None),
        (
            StorageError(f"table busy https://x/?sig={SECRET}"),
            503,
            "5",
            "storage unavailable, retry later",
            "route: table busy https://x/",
        ),
        (
            ConflictError("workspace busy"),
            503,
            "5",
            "storage unavailable, retry later",
            "route: workspace busy",
        ),
        (NotARepository("broken"), 500, None, "internal error", "route failed: broken"),
        (KeyError(SECRET), 500, None, "internal error", "route crashed: KeyError: '***'"),
        (ClientDisconnect(), 400, None, None, None),
    ],
    ids=["usage", "storage", "conflict", "our-error", "bug", "disconnect"],
)
def test_exceptions_become_answers_without_secrets(exc, status, retry_after, error, logged, caplog):
    """Each kind of failure has its status and its one-line answer; no secret reaches the
    answer or a log line above DEBUG (the traceback, DEBUG only, is the one place an
    exception's text stays whole)."""
    caplog.set_level(logging.DEBUG, logger="gitops_sync")
    response = answer_for("route", exc, [SECRET])
    assert status == response.status_code
    assert retry_after == response.headers.get("retry-after")
    body = bytes(response.body).decode()
    # A client that hung up gets no body at all; every other answer is {"error": ...}.
    assert ({"error": error} if error is not None else None) == (json.loads(body) if body else None)
    above_debug = [r.getMessage() for r in caplog.records if r.levelno > logging.DEBUG]
    assert ([logged] if logged else []) == above_debug
