"""The functionapp target's package builder: byte-reproducible, keyed by the set of active
versions, and refusing what cannot share one Function App with a message naming both sides."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from gitops_sync.core.appgen import SITE_PACKAGES, AppBuildError, app_key, build_app_package
from gitops_sync.core.zipwrite import ZipEntry, ZipLayoutError, write_zip, zip_timestamp
from tests.function_packages import dist, function_package

ROOT = Path(__file__).resolve().parents[2]


def _two() -> list[tuple[str, str, bytes]]:
    return [
        function_package("alpha", {"main.py": "def handle(e, c):\n    return 1\n", "run.sh": "x"}),
        function_package(
            "beta",
            {"main.py": "def handle(e, c):\n    return 2\n", **dist("dep", "1.0", {"dep.py": ""})},
        ),
    ]


def test_key_is_the_sorted_name_sha_pairs_and_nothing_else():
    """The key is the same whatever the order functions are given in, and equals app_key."""
    a, b = _two()
    forward, backward = build_app_package([a, b]), build_app_package([b, a])
    assert forward.key == backward.key == app_key([(a[0], a[1]), (b[0], b[1])])
    assert forward.data == backward.data
    assert "apps/" + forward.key + ".zip" == forward.blob_name


def test_key_changes_when_one_function_version_changes():
    """A new version of one function gives a new key."""
    a, b = _two()
    b2 = function_package("beta", {"main.py": "def handle(e, c):\n    return 3\n"})
    assert build_app_package([a, b]).key != build_app_package([a, b2]).key


def test_layout_of_the_app_package():
    """Function roots under functions/<name>/, deps merged under .python_packages, generated
    host.json / function_app.py / gitops_sync_app.json at the root."""
    app = build_app_package(_two())
    assert {
        "host.json", "function_app.py", "gitops_sync_app.json",
        "functions/alpha/main.py", "functions/alpha/run.sh", "functions/alpha/manifest.json",
        "functions/beta/main.py", "functions/beta/manifest.json",
        f"{SITE_PACKAGES}/dep.py", f"{SITE_PACKAGES}/dep-1.0.dist-info/METADATA",
        f"{SITE_PACKAGES}/dep-1.0.dist-info/RECORD",
    } == set(app.entries)  # fmt: skip
    with zipfile.ZipFile(io.BytesIO(app.data)) as zf:
        host = json.loads(zf.read("host.json"))
        spec = json.loads(zf.read("gitops_sync_app.json"))
    assert "2.0" == host["version"]
    assert (app.key, ["alpha", "beta"]) == (spec["key"], [f["name"] for f in spec["functions"]])


def test_zip_entries_are_sorted_with_fixed_time_modes_and_no_extra_fields():
    """Every entry: sorted, 1980-01-01, 0644 or 0755, Unix attributes, no extra field, deflated."""
    data = write_zip(
        [ZipEntry("b/x.sh", b"#!/bin/sh\n", executable=True), ZipEntry("a.txt", b"a" * 100)]
    )
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        infos = zf.infolist()
    assert ["a.txt", "b/x.sh"] == [i.filename for i in infos]
    assert [0o100644, 0o100755] == [i.external_attr >> 16 for i in infos]
    for info in infos:
        assert ((1980, 1, 1, 0, 0, 0), b"", 3, zipfile.ZIP_DEFLATED) == (
            info.date_time, info.extra, info.create_system, info.compress_type
        )  # fmt: skip


@pytest.mark.parametrize(
    ("epoch", "expected"),
    [
        (None, (1980, 1, 1, 0, 0, 0)),
        (0, (1980, 1, 1, 0, 0, 0)),
        (1700000001, (2023, 11, 14, 22, 13, 20)),
        (2**40, (2107, 12, 31, 23, 59, 58)),
    ],
    ids=["unset", "before-1980", "odd-second-rounds-down", "past-dos-range"],
)
def test_source_date_epoch_is_clamped_to_dos_range(epoch, expected):
    """SOURCE_DATE_EPOCH sets the entries' time, clamped to what DOS time can say."""
    assert expected == zip_timestamp(epoch)


@pytest.mark.parametrize("path", ["../x", "/abs", "a//b", "a/", "", "a\\b"])
def test_unsafe_or_unnormalised_entry_names_are_refused(path):
    """The writer refuses names that are not plain relative paths."""
    with pytest.raises(ZipLayoutError):
        write_zip([ZipEntry(path, b"")])


_BUILD = """
import hashlib, sys
sys.path[:0] = [{root!r}, {workflows!r}]
from tests.unit.test_appgen import _two
from gitops_sync.core.appgen import build_app_package
print(hashlib.sha256(build_app_package(_two()).data).hexdigest())
"""


def test_same_inputs_give_the_same_bytes_in_other_processes_dirs_and_umasks(tmp_path: Path):
    """Two other processes (different cwd, umask, hash seed) build byte-identical packages."""
    code = _BUILD.format(root=str(ROOT), workflows=str(ROOT / "workflows"))
    digests = set()
    for n, (umask, seed) in enumerate([("0022", "1"), ("0077", "2")]):
        cwd = tmp_path / f"build{n}"
        cwd.mkdir()
        out = subprocess.run(
            ["sh", "-c", f'umask {umask} && exec "$0" -c "$1"', sys.executable, code],
            cwd=cwd,
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        digests.add(out.stdout.strip())
    assert {hashlib.sha256(build_app_package(_two()).data).hexdigest()} == digests


def test_the_same_dependency_with_different_bytes_names_both_functions_and_the_distribution():
    """Two functions shipping dep.py with different bytes fail the build naming both and 'dep'."""
    a = function_package("alpha", {"main.py": "", **dist("dep", "1.0", {"dep.py": "A = 1\n"})})
    b = function_package("beta", {"main.py": "", **dist("dep", "1.0", {"dep.py": "A = 2\n"})})
    with pytest.raises(AppBuildError) as caught:
        build_app_package([b, a])
    message = str(caught.value)
    assert "'alpha' and 'beta'" in message and "'dep'" in message and "dep.py" in message


def test_two_versions_of_one_distribution_name_both_functions_and_the_distribution():
    """Requirements pinning one distribution at two versions fail naming both and the package."""
    old = [{"name": "Requests", "version": "2.31.0", "sha256": "a"}]
    new = [{"name": "requests", "version": "2.32.0", "sha256": "b"}]
    a = function_package("alpha", {"main.py": ""}, requirements=old)
    b = function_package("beta", {"main.py": ""}, requirements=new)
    with pytest.raises(
        AppBuildError, match=r"'alpha' and 'beta'.*'Requests' \(2\.31\.0 and 2\.32\.0\)"
    ):
        build_app_package([a, b])


def test_identical_dependencies_are_shared_and_bytecode_is_left_out():
    """The same dependency files in two functions are merged once; __pycache__ is dropped."""
    files = {"main.py": "", **dist("dep", "1.0", {"dep.py": "A = 1\n"})}
    files["_deps/__pycache__/dep.cpython-311.pyc"] = "bytes"
    app = build_app_package([function_package("alpha", files), function_package("beta", files)])
    assert [f"{SITE_PACKAGES}/dep.py"] == [e for e in app.entries if e.endswith("dep.py")]
    assert not [e for e in app.entries if "__pycache__" in e]


def test_conflicting_environment_values_name_both_functions_and_the_variable():
    """One process has one environment: two values for one variable fail the build."""
    a = function_package("alpha", {"main.py": ""}, environment={"MODE": "a"})
    b = function_package("beta", {"main.py": ""}, environment={"MODE": "b"})
    with pytest.raises(AppBuildError, match="'alpha' and 'beta' set environment variable 'MODE'"):
        build_app_package([a, b])


@pytest.mark.parametrize(
    ("mangle", "expected"),
    [
        (lambda n, s, d: (n, "f" * 64, d), "manifest.json names"),
        (lambda n, s, d: ("other", s, d), "manifest.json names"),
        (lambda n, s, d: (n, s, b"not a zip"), "not a readable ZIP"),
        (lambda n, s, d: ("Bad_Name", s, d), "not a valid function name"),
    ],
    ids=["sha-mismatch", "name-mismatch", "not-a-zip", "bad-name"],
)
def test_a_package_that_is_not_what_it_claims_is_refused(mangle, expected):
    """A package whose manifest disagrees with its name or sha256, or that is no ZIP, is refused."""
    name, sha, data = function_package("alpha", {"main.py": ""})
    with pytest.raises(AppBuildError, match=expected):
        build_app_package([mangle(name, sha, data)])


def test_generated_function_app_is_lint_clean(tmp_path: Path):
    """The generated function_app.py passes the project's own ruff check and format."""
    target = tmp_path / "function_app.py"
    with zipfile.ZipFile(io.BytesIO(build_app_package(_two()).data)) as zf:
        target.write_bytes(zf.read("function_app.py"))
    ruff = str(Path(sys.executable).parent / "ruff")
    config = ["--config", str(ROOT / "pyproject.toml")]
    for command in (["check"], ["format", "--check"]):
        done = subprocess.run(
            [ruff, *command, *config, str(target)], capture_output=True, text=True, timeout=60
        )
        assert 0 == done.returncode, done.stdout + done.stderr
