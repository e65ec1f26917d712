"""docs/reference.md and the code agree: commands, options, routes, settings, fields, exit codes.

Code -> docs is strict: anything a user can call or set is documented. Docs -> code is strict
too, except for ``NOT_YET_BUILT``: documented items another branch is building this round (the
lead empties it after merging; ``test_not_yet_built_is_exact`` says when an entry is stale).
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import click
import pytest

from gitops_sync.cli import cli
from gitops_sync.core import function_toml
from gitops_sync.http.routes import ROUTES
from tests.unit.test_settings_agree import (
    CONTRACT,
    DEBUG_SETTINGS,
    PLATFORM_NAMES,
    WHERE,
    contract_table,
)
from tests.unit.test_settings_agree import settings_py_names as app_setting_names

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "docs" / "reference.md"
CLI_DIRS = [
    REPO / "workflows" / "gitops_sync" / "cli",
    REPO / "workflows" / "gitops_sync" / "local",
]

#: Documented here, built on another branch this round: commands ("functions list"), options
#: ("jobs list --key"), routes ("GET /api/runtimes") and function.toml fields ("field:include").
NOT_YET_BUILT: set[str] = set()


@cache
def reference() -> str:
    return REFERENCE.read_text(encoding="utf-8")


def section(title: str, text: str | None = None) -> str:
    """The text under the heading ``title`` up to the next heading of the same or a higher level."""
    text = reference() if text is None else text
    m = re.search(rf"^(#+) {re.escape(title)}\s*$", text, re.M)
    assert m, f"docs/reference.md has no heading {title!r}"
    level = len(m[1])
    end = re.search(rf"^#{{1,{level}}} ", text[m.end() :], re.M)
    return text[m.end() : m.end() + end.start() if end else len(text)]


def own_text(title: str) -> str:
    """A heading's text up to the next heading of any level (not its subsections)."""
    body = section(title)
    nxt = re.search(r"^#+ ", body, re.M)
    return body[: nxt.start()] if nxt else body


def first_cells(text: str) -> list[str]:
    """The backticked first cell of each table row."""
    return re.findall(r"^\|\s*`([^`]+)`", text, re.M)


# --- the command line ------------------------------------------------------------------------


def cli_commands() -> dict[str, click.Command]:
    """Every command and subcommand of ``gitops-sync`` by path (``"jobs list"``)."""
    found: dict[str, click.Command] = {}

    def walk(cmd: click.Command, path: list[str]) -> None:
        if path:
            found[" ".join(path)] = cmd
        if isinstance(cmd, click.Group):
            ctx = click.Context(cmd)
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                assert sub is not None
                walk(sub, [*path, name])

    walk(cli, [])
    return found


def documented_commands() -> set[str]:
    return set(re.findall(r"^#{3,4} `gitops-sync ([a-z][a-z -]*)`\s*$", reference(), re.M))


def options(cmd: click.Command) -> set[str]:
    return {
        opt
        for p in cmd.params
        if isinstance(p, click.Option)
        for opt in p.opts + p.secondary_opts
        if opt.startswith("--")
    }


def documented_options(path: str) -> set[str]:
    """The options a command's table lists (``| `-o`, `--output` | ...``)."""
    rows = re.findall(r"^\|([^|]*)\|", own_text(f"`gitops-sync {path}`"), re.M)
    return {opt for row in rows for opt in re.findall(r"`(--[a-z][a-z-]*)`", row)}


def test_every_command_is_documented():
    """Each gitops-sync command and subcommand has its own heading in the reference."""
    assert [] == sorted(set(cli_commands()) - documented_commands())


def test_every_documented_command_exists():
    """Each command the reference documents is one the CLI has (or is being built)."""
    assert [] == sorted(documented_commands() - set(cli_commands()) - NOT_YET_BUILT)


def test_commands_of_the_contract_are_documented():
    """The reference has a heading for every command group users are told about."""
    groups = {"sync", "dev", "serve", "worker", "jobs", "connections", "functions", "download",
              "webhook send"}  # fmt: skip
    assert set() == groups - documented_commands()


@pytest.mark.parametrize("path", sorted(cli_commands()))
def test_every_option_is_documented_under_its_command(path):
    """Every long option of a command appears in that command's table in the reference."""
    cmd = cli_commands()[path]
    if path in {"webhook", "jobs", "connections"}:  # groups: no options of their own
        assert set() == options(cmd)
        return
    assert [] == sorted(options(cmd) - documented_options(path))


@pytest.mark.parametrize("path", sorted(documented_commands() & set(cli_commands())))
def test_every_documented_option_exists(path):
    """Every option a command's table lists is an option of that command (or being built)."""
    extra = documented_options(path) - options(cli_commands()[path])
    assert [] == sorted(o for o in extra if f"{path} {o}" not in NOT_YET_BUILT)


def test_version_flag_is_documented():
    """The top-level --version flag is mentioned."""
    assert "--version" in options(cli) and "`gitops-sync --version`" in reference()


# --- exit codes ------------------------------------------------------------------------------


def cli_exit_codes() -> set[int]:
    """Exit codes the CLI passes to ``fail(...)`` or ``sys.exit(...)``, plus 0, 1 and 2."""
    codes = {0, 1, 2}  # success; fail()'s default; click's usage errors
    for path in (REPO / "workflows" / "gitops_sync" / "cli").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            name = ast.unparse(node.func)
            args = node.args[1:2] if name == "fail" else node.args[:1] if name == "sys.exit" else []
            codes |= {
                a.value for a in args if isinstance(a, ast.Constant) and isinstance(a.value, int)
            }
    return codes


def test_every_exit_code_is_documented():
    """Each exit code the CLI can end with is in the exit-code table."""
    documented = {int(c) for c in first_cells(section("Exit codes"))}
    assert {0, 1, 2} <= documented
    assert [] == sorted(cli_exit_codes() - documented)


# --- HTTP routes -----------------------------------------------------------------------------

_AUTH = {"none": "none", "key": "key", "hmac": "HMAC"}


def code_routes() -> dict[str, str]:
    """``"GET /api/jobs/{job_id}"`` -> auth, for every route both hosts serve."""
    return {
        f"{method} {route.path.replace('{path:path}', '{path}')}": _AUTH[route.auth]
        for route in ROUTES
        for method in route.methods
    }


def documented_routes() -> dict[str, str]:
    rows = re.findall(
        r"^\|\s*`([A-Z]+ /api/[^`]*)`\s*\|\s*([^|]+?)\s*\|", section("HTTP API"), re.M
    )
    return dict(rows)


def test_every_route_is_documented_with_its_auth():
    """Each route of ROUTES is a row of the route table, with the same auth."""
    documented = documented_routes()
    assert {} == {r: a for r, a in code_routes().items() if documented.get(r) != a}


def test_every_documented_route_exists():
    """Each row of the route table is a route of ROUTES (or being built)."""
    assert [] == sorted(set(documented_routes()) - set(code_routes()) - NOT_YET_BUILT)


# --- settings --------------------------------------------------------------------------------


def documented_settings(which: int) -> set[str]:
    """Names in the ``which``-th table of the Settings section (0: the app's, 1: the CLI's)."""
    tables = re.split(r"\n(?!\|)[^\n]*\n(?=\|)", section("Settings"))
    found = [set(first_cells(t)) for t in tables if first_cells(t)]
    return found[which]


def cli_environment_names() -> set[str]:
    """``GITOPS_SYNC_*`` names the CLI and the local stack read (string literals in their code)."""
    return {
        m
        for folder in CLI_DIRS
        for path in folder.glob("*.py")
        for m in re.findall(r"[\"'](GITOPS_SYNC_[A-Z_]+)[\"']", path.read_text(encoding="utf-8"))
    }


def test_every_setting_the_app_reads_is_documented():
    """Each name settings.py reads (platform markers aside) is a row of the settings table."""
    assert [] == sorted(app_setting_names() - PLATFORM_NAMES - documented_settings(0))


def test_every_documented_setting_is_read():
    """Each row of the settings table is a name settings.py reads."""
    assert [] == sorted(documented_settings(0) - app_setting_names())


def test_the_agreement_table_places_every_documented_setting():
    """test_settings_agree's WHERE tables say where each documented setting is set, none missing."""
    assert sorted(documented_settings(0)) == sorted(set(WHERE) | set(DEBUG_SETTINGS))


def test_every_cli_variable_is_documented():
    """Each GITOPS_SYNC_* name the CLI or local stack reads is in one of the two tables."""
    documented = documented_settings(0) | documented_settings(1)
    assert [] == sorted(cli_environment_names() - documented)


def test_every_documented_cli_variable_is_read():
    """Each name of the CLI's table is read by the CLI or the local stack."""
    assert [] == sorted(documented_settings(1) - cli_environment_names())


def test_the_platform_markers_are_explained():
    """The Azure markers that turn the debugger off are named where ENABLE_DEBUGGING is."""
    row = next(line for line in section("Settings").splitlines() if "`ENABLE_DEBUGGING`" in line)
    assert all(name in row for name in PLATFORM_NAMES - {"XDG_CACHE_HOME", "SOURCE_DATE_EPOCH"})


# --- repository conventions ------------------------------------------------------------------


def documented_fields() -> set[str]:
    return set(first_cells(section("`function.toml`")))


def test_every_function_toml_field_is_documented():
    """Each field function.toml accepts has a row (default and rule) in the reference."""
    assert [] == sorted(set(function_toml.FIELDS) - documented_fields())


def test_every_documented_field_is_accepted():
    """Each documented field is one function.toml accepts (or being built)."""
    extra = documented_fields() - set(function_toml.FIELDS)
    assert [] == sorted(f for f in extra if f"field:{f}" not in NOT_YET_BUILT)


def test_documented_ranges_and_runtimes_are_the_codes():
    """Every integer field's default and range, and the runtime list, are the code's."""
    fields = section("`function.toml`")
    for name, (default, lo, hi) in function_toml.INT_FIELDS.items():
        row = next(line for line in fields.splitlines() if line.startswith(f"| `{name}`"))
        assert f"`{default}`" in row
        assert str(lo) in row and str(hi) in row
    runtime_row = next(line for line in fields.splitlines() if line.startswith("| `runtime`"))
    assert re.findall(r"`(python[\d.]+)`", runtime_row) == list(function_toml.SUPPORTED_RUNTIMES)


# --- the list of what is not built yet -------------------------------------------------------


def test_not_yet_built_is_exact():
    """An entry of NOT_YET_BUILT that now exists in the code is stale: remove it."""
    commands = set(cli_commands())
    built = {
        item
        for item in NOT_YET_BUILT
        if item in commands
        or item in code_routes()
        or (item.startswith("field:") and item[6:] in function_toml.FIELDS)
        or (
            " --" in item
            and item.rsplit(" ", 1)[0] in commands
            and item.rsplit(" ", 1)[1] in options(cli_commands()[item.rsplit(" ", 1)[0]])
        )
    }
    assert set() == built


# --- the README and the contract -------------------------------------------------------------


def test_readme_points_to_the_reference_not_the_contract():
    """Users are sent to docs/reference.md; ../shared/ does not exist in a clone."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert ("docs/reference.md" in readme, "../shared/CONTRACT.md" in readme) == (True, False)


def test_reference_covers_the_contract():
    """Every route and setting of ../shared/CONTRACT.md is in the reference (skipped without it)."""
    table = contract_table()  # skips when the contract is absent
    text = CONTRACT.read_text(encoding="utf-8")
    routes = {
        f"{m} {p.rstrip('/')}"
        for m, p in re.findall(r"`(GET|POST|PUT|DELETE) (/api/[^`?\[ ]*)", text)
    }
    assert [] == sorted(routes - set(documented_routes()))
    assert [] == sorted(set(table) - documented_settings(0))
