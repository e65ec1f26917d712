"""``cli/_client.py``: where the URL and key come from, and which URLs are usage errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gitops_sync.cli._client import DEFAULT_URL, check_url, connect
from gitops_sync.core.errors import UsageError


@pytest.fixture()
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder whose running dev (this very process, so its pid is alive) listens on :7999."""
    state = {"url": "http://127.0.0.1:7999", "api_key": "dev-key", "pid": os.getpid()}
    (tmp_path / ".gitops-sync-dev").mkdir()
    (tmp_path / ".gitops-sync-dev" / "dev.json").write_text(json.dumps(state))
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    monkeypatch.delenv("GITOPS_SYNC_URL", raising=False)
    monkeypatch.delenv("GITOPS_SYNC_API_KEY", raising=False)
    return tmp_path


@pytest.mark.parametrize(
    ("flags", "env", "expected"),
    [
        ((None, None), {}, ("http://127.0.0.1:7999", "dev-key")),
        (("http://h:1/", None), {}, ("http://h:1", None)),
        ((None, None), {"GITOPS_SYNC_URL": "http://e:2"}, ("http://e:2", None)),
        ((None, None), {"GITOPS_SYNC_API_KEY": "env-key"}, ("http://127.0.0.1:7999", "env-key")),
        (("http://127.0.0.1:7999", "flag-key"), {}, ("http://127.0.0.1:7999", "flag-key")),
    ],
    ids=["dev-in-a-parent", "flag-url-no-dev-key", "env-url", "env-key", "flag-key"],
)
def test_url_and_key_fall_back_in_order(
    project: Path,
    monkeypatch: pytest.MonkeyPatch,
    flags: tuple[str | None, str | None],
    env: dict[str, str],
    expected: tuple[str, str | None],
) -> None:
    """Flag, then environment, then the dev running here or in a parent; dev's key goes
    only to dev's URL."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    server = connect(*flags)
    assert expected == (server.url, server.key)


def test_a_dev_that_is_not_running_is_ignored(project: Path) -> None:
    """A dev.json whose pid is gone does not count: the default URL, no key."""
    path = project / ".gitops-sync-dev" / "dev.json"
    state = json.loads(path.read_text())
    path.write_text(json.dumps({**state, "pid": 2**22 + 12345}))
    assert (DEFAULT_URL, None) == (connect(None, None).url, connect(None, None).key)


@pytest.mark.parametrize(
    "url", ["http://[::1", "ftp://example.com", "example.com:7071", "http://", ""]
)
def test_malformed_urls_are_usage_errors(url: str) -> None:
    """Anything but an http(s) URL with a host is a usage error (exit 2)."""
    with pytest.raises(UsageError):
        check_url(url)
