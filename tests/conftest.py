"""Shared fixtures. Git identity is fixed so commits are reproducible on any machine."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _git_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test commits as the same author, with no global git config needed."""
    for key, value in {
        "GIT_AUTHOR_NAME": "gitops-sync tests",
        "GIT_AUTHOR_EMAIL": "tests@gitops-sync.invalid",
        "GIT_COMMITTER_NAME": "gitops-sync tests",
        "GIT_COMMITTER_EMAIL": "tests@gitops-sync.invalid",
        "GIT_CONFIG_NOSYSTEM": "1",
    }.items():
        monkeypatch.setenv(key, value)
    os.environ.pop("GIT_DIR", None)
