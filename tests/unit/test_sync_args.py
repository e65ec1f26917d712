"""The lean ``gitops-sync sync`` path: which arguments it takes itself, and what it reads."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gitops_sync.cli.sync_run import cache_dir, parse_args
from gitops_sync.settings import Settings

BASE = ["--repo", "r", "--ref", "main", "--workspace", "ws"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (BASE, ("r", "main", "ws", False, False)),
        (["--repo=r", "--ref=main", "--workspace=ws", "--json"], ("r", "main", "ws", False, True)),
        ([*BASE, "--dry-run", "--json"], ("r", "main", "ws", True, True)),
        (["--workspace", "ws", "--dry-run", "--ref", "v1", "--repo", "r"],
         ("r", "v1", "ws", True, False)),
        (["--repo=", "--ref", "main", "--workspace", "ws"], ("", "main", "ws", False, False)),
    ],
    ids=["spaced", "equals", "flags", "any-order", "empty-value"],
)  # fmt: skip
def test_well_formed_options_are_parsed_without_click(args, expected):
    """Plainly valid options give the same values click would."""
    opts = parse_args(args)
    assert opts is not None
    assert expected == (opts.repo, opts.ref, opts.workspace, opts.dry_run, opts.as_json)


@pytest.mark.parametrize(
    "args",
    [
        ["--repo", "r"],
        [*BASE, "--help"],
        [*BASE, "-h"],
        [*BASE, "--ref", "other"],
        [*BASE, "--json", "--json"],
        ["--repo", "r", "--ref", "--workspace", "ws"],
        ["--repo", "r", "--ref", "-x", "--workspace", "ws"],
        [*BASE, "extra"],
        [*BASE, "--dry-run=yes"],
        [*BASE, "--"],
        [*BASE, "--repo"],
        [*BASE, "--verbose"],
    ],
    ids=["missing", "help", "short-help", "repeated", "repeated-flag", "value-missing",
         "dash-value", "positional", "flag-value", "double-dash", "trailing", "unknown"],
)  # fmt: skip
def test_anything_else_is_left_to_click(args):
    """Help, missing, repeated, unknown or dash-leading values go to click (None)."""
    assert None is parse_args(args)


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"XDG_CACHE_HOME": "/x/cache"},
        {"GITOPS_SYNC_CACHE_DIR": "/y/repos", "XDG_CACHE_HOME": "/x/cache"},
        {"GITOPS_SYNC_CACHE_DIR": "", "XDG_CACHE_HOME": ""},
    ],
    ids=["default", "xdg", "explicit", "empty"],
)
def test_cache_dir_is_the_settings_one(env):
    """The lean path keeps fetched repositories where ``Settings.cache_dir`` says."""
    assert Settings.from_env(env).cache_dir == cache_dir(env)


def test_a_sync_imports_no_click_and_no_settings(tmp_path):
    """A well-formed sync runs without importing click, the settings module or azure.*."""
    from tests.gitrepo import Repo

    repo = Repo(tmp_path / "repo")
    repo.write("a.txt", "a")
    repo.commit("A")
    cmd = [sys.executable, "-X", "importtime", "-m", "gitops_sync", "sync", "--repo",
           str(repo.path), "--ref", "main", "--workspace", str(tmp_path / "ws")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert 0 == proc.returncode, proc.stderr
    imported = {ln.rsplit("|", 1)[1].strip() for ln in proc.stderr.splitlines() if "|" in ln}
    assert "gitops_sync.sync" in imported  # the measure works
    assert set() == {m for m in imported if m.split(".")[0] in ("click", "azure", "rich")}
    assert "gitops_sync.settings" not in imported


def test_the_store_writes_executables_with_gits_mode_constant():
    """The directory store's own copy of the executable mode is core.model's."""
    from gitops_sync.adapters import dir_store
    from gitops_sync.core.model import MODE_EXEC

    assert MODE_EXEC == dir_store._EXEC


def test_the_early_tree_listing_is_the_one_the_sync_asks_for():
    """The listing started early names what the index path lists first (.syncignore, functions/)."""
    from gitops_sync.cli.sync_run import FIRST_LISTED
    from gitops_sync.core.function_report import FUNCTIONS_DIR
    from gitops_sync.core.select import SYNCIGNORE

    assert (SYNCIGNORE, FUNCTIONS_DIR) == FIRST_LISTED


def test_a_sync_ends_its_process_with_atexit_run_and_output_flushed(tmp_path):
    """The lean sync ends the process without the interpreter's teardown: an ``atexit``
    function (the benchmark's CPU probe is one) still runs, and the summary is all out."""
    from tests.gitrepo import Repo

    repo = Repo(tmp_path / "repo")
    repo.write("a.txt", "a")
    repo.commit("A")
    mark = tmp_path / "atexit-ran"
    code = (
        "import atexit, pathlib, sys\n"
        f"atexit.register(pathlib.Path({str(mark)!r}).write_text, 'yes')\n"
        "from gitops_sync.cli import main\n"
        "main()\n"
        "sys.exit(3)  # never reached: the sync ends the process with 0\n"
    )
    cmd = [sys.executable, "-c", code, "sync", "--repo", str(repo.path), "--ref", "main",
           "--workspace", str(tmp_path / "ws"), "--json"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert (0, "yes") == (proc.returncode, mark.read_text())
    assert 1 == json.loads(proc.stdout)["added"]
