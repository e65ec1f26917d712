"""Shared fixtures. Git identity is fixed so commits are reproducible on any machine."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from gitops_sync.adapters.azurite import Azurite


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


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """One real Azurite (blob, queue, table; in memory; free ports) for the whole session."""
    with Azurite() as az:
        yield az


@pytest.fixture()
def storage(azurite: Azurite) -> str:
    """The session Azurite's connection string."""
    return azurite.connection_string
