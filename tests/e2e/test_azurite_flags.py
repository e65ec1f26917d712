"""Azurite's Node.js runs with the project's V8 flags (``adapters.azurite.NODE_FLAGS``),
wherever the project starts it: tests, ``gitops-sync dev``, the benchmarks."""

from __future__ import annotations

from pathlib import Path

from gitops_sync.adapters.azurite import NODE_FLAGS, Azurite, node_options


def test_the_flags_are_added_to_what_node_options_already_holds():
    assert NODE_FLAGS == ("--max-semi-space-size=64",)
    assert node_options(None) == "--max-semi-space-size=64"
    assert node_options("--require /x.js") == "--require /x.js --max-semi-space-size=64"


def test_a_flag_the_user_gave_wins():
    assert node_options("--max-semi-space-size=8 --inspect") == "--max-semi-space-size=8 --inspect"


def test_the_running_azurite_got_them(azurite: Azurite):
    assert azurite._proc is not None
    environ = Path(f"/proc/{azurite._proc.pid}/environ").read_bytes().split(b"\0")
    options = next(v for v in environ if v.startswith(b"NODE_OPTIONS=")).decode()
    assert "--max-semi-space-size=64" in options.split("=", 1)[1].split()
