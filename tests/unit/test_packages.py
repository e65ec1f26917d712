"""Packages: byte-reproducible, content-hashed, built from git blobs, requirements installed."""

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

from gitops_sync.adapters.git_source import GitSource
from gitops_sync.core.packaging import epoch_from, read_manifest
from gitops_sync.core.zipwrite import zip_timestamp
from gitops_sync.deploy.build import scan_functions
from tests.deploy_support import add_function, build_one, make_wheel
from tests.gitrepo import Repo

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def repo(tmp_path: Path) -> Repo:
    r = Repo(tmp_path / "repo")
    add_function(r, "alpha", "a", 'include = ["lib/common"]\n')
    add_function(r, "beta", "b", 'include = ["lib/common"]\n')
    add_function(r, "gamma", "c")
    r.write("functions/alpha/run.sh", "#!/bin/sh\necho hi\n", executable=True)
    r.write("lib/common/util.py", "X = 1\n")
    r.write("README.md", "hello\n")
    return r


def _zip_entries(data: bytes) -> list[zipfile.ZipInfo]:
    return zipfile.ZipFile(io.BytesIO(data)).infolist()


def test_package_holds_function_files_includes_and_manifest(repo, tmp_path):
    """The function's files at the root, include dirs under _include/<name>/, a manifest."""
    commit = repo.commit()
    pkg = build_one(repo.path, commit, "alpha", tmp_path / "pip")
    names = [i.filename for i in _zip_entries(pkg.data)]
    assert ["_include/common/util.py", "function.toml", "main.py", "manifest.json", "run.sh"] == (
        names
    )
    manifest = read_manifest(pkg.data)
    assert ("alpha", commit) == (manifest["name"], manifest["commit"])
    modes = {f["path"]: f["mode"] for f in manifest["files"]}
    assert {"run.sh": "0755", "main.py": "0644"} == {k: modes[k] for k in ("run.sh", "main.py")}


def test_zip_entries_are_normalised(repo, tmp_path):
    """Sorted names, one fixed timestamp (1980), modes 0644/0755, no extra fields, deflate."""
    pkg = build_one(repo.path, repo.commit(), "alpha", tmp_path / "pip")
    infos = _zip_entries(pkg.data)
    assert sorted(i.filename for i in infos) == [i.filename for i in infos]
    assert {(1980, 1, 1, 0, 0, 0)} == {i.date_time for i in infos}
    assert {0o100644, 0o100755} == {i.external_attr >> 16 for i in infos}
    assert {b""} == {i.extra for i in infos}
    assert {zipfile.ZIP_DEFLATED} == {i.compress_type for i in infos}


def test_source_date_epoch_sets_the_time_and_is_clamped_to_1980():
    """SOURCE_DATE_EPOCH gives the time (even seconds); earlier than 1980 gives 1980."""
    assert (2023, 11, 14, 22, 13, 20) == zip_timestamp(epoch_from("1700000001"))
    assert (1980, 1, 1, 0, 0, 0) == zip_timestamp(epoch_from("0"))
    assert (1980, 1, 1, 0, 0, 0) == zip_timestamp(epoch_from("not a number"))


def test_source_date_epoch_reaches_the_package(repo, tmp_path):
    """A build with SOURCE_DATE_EPOCH dates every entry with it."""
    pkg = build_one(repo.path, repo.commit(), "gamma", tmp_path / "pip", epoch="1700000001")
    assert {(2023, 11, 14, 22, 13, 20)} == {i.date_time for i in _zip_entries(pkg.data)}


_BUILD_SCRIPT = """
import os, sys
from pathlib import Path
os.umask(int(sys.argv[4], 8))
from tests.deploy_support import build_one
pkg = build_one(Path(sys.argv[1]), sys.argv[2], "alpha", Path(sys.argv[3]))
sys.stdout.write(pkg.package_sha256)
"""


def test_same_content_gives_same_bytes_in_other_folders_processes_and_umasks(repo, tmp_path):
    """Two clones in different folders, built by two processes with different umasks: same bytes."""
    commit = repo.commit()
    digests = []
    for i, umask in enumerate(("022", "077")):
        clone = tmp_path / f"clone{i}"
        subprocess.run(["git", "clone", "-q", str(repo.path), str(clone)], check=True)
        os.utime(clone / "functions/alpha/main.py", (1_000_000 + i, 1_000_000 + i))
        out = subprocess.run(
            [sys.executable, "-c", _BUILD_SCRIPT, str(clone), commit, str(tmp_path / f"p{i}"),
             umask],
            cwd=REPO_ROOT, check=True, capture_output=True, text=True,
        )  # fmt: skip
        digests.append(out.stdout)
    assert digests[0] == digests[1]
    assert digests[0] == build_one(repo.path, commit, "alpha", tmp_path / "pip").package_sha256


def _hashes(repo_path: Path, commit: str) -> dict[str, str]:
    return scan_functions(GitSource(str(repo_path)), commit).hashes


def test_shared_include_changes_exactly_the_functions_that_include_it(repo):
    """Editing lib/common changes alpha's and beta's hash, not gamma's."""
    before = _hashes(repo.path, repo.commit("one"))
    repo.write("lib/common/util.py", "X = 2\n")
    after = _hashes(repo.path, repo.commit("two"))
    assert {"alpha", "beta"} == {n for n in before if before[n] != after[n]}


def test_unrelated_file_and_commit_do_not_change_any_hash(repo):
    """A new commit that changes only README leaves every hash as it was."""
    before = _hashes(repo.path, repo.commit("one"))
    repo.write("README.md", "changed\n")
    assert before == _hashes(repo.path, repo.commit("two"))


def test_config_change_changes_the_hash(repo):
    """memory_mb is behaviour: changing it changes the function's hash."""
    before = _hashes(repo.path, repo.commit("one"))
    repo.write(
        "functions/gamma/function.toml",
        'runtime = "python3.11"\nhandler = "main.handle"\nmemory_mb = 256\n',
    )
    after = _hashes(repo.path, repo.commit("two"))
    assert {"gamma"} == {n for n in before if before[n] != after[n]}


def test_missing_include_directory_fails_that_function_alone(repo):
    """An include naming no synced files is an error naming the toml and the field."""
    repo.write(
        "functions/gamma/function.toml",
        'runtime = "python3.11"\nhandler = "main.handle"\ninclude = ["lib/nope"]\n',
    )
    report = scan_functions(GitSource(str(repo.path)), repo.commit())
    assert ["alpha", "beta"] == sorted(report.specs)
    assert [
        {
            "path": "functions/gamma/function.toml",
            "error": "functions/gamma/function.toml: field 'include':"
            " 'lib/nope' has no synced files in this commit",
        }
    ] == report.invalid


def test_requirements_are_installed_into_deps_with_resolved_versions(repo, tmp_path, monkeypatch):
    """requirements.txt installs (wheels only) under _deps/, and the manifest names the dist."""
    wheels = tmp_path / "wheels"
    make_wheel(wheels)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    repo.write("functions/gamma/requirements.txt", "tinydep==1.0\n")
    commit = repo.commit()
    pkg = build_one(repo.path, commit, "gamma", tmp_path / "pip")
    names = {i.filename for i in _zip_entries(pkg.data)}
    assert "_deps/tinydep/__init__.py" in names
    assert not any("__pycache__" in n for n in names)
    reqs = read_manifest(pkg.data)["requirements"]
    assert [("tinydep", "1.0")] == [(r["name"], r["version"]) for r in reqs]
    wheel_bytes = (wheels / "tinydep-1.0-py3-none-any.whl").read_bytes()
    assert hashlib.sha256(wheel_bytes).hexdigest() == reqs[0]["sha256"]
    # a second build runs pip no more: same bytes from the cache
    assert pkg.data == build_one(repo.path, commit, "gamma", tmp_path / "pip").data


def test_unresolvable_requirement_fails_with_pips_reason_in_one_line(repo, tmp_path, monkeypatch):
    """A requirement pip cannot find raises one line with pip's reason."""
    from gitops_sync.adapters.pip_deps import RequirementsError

    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "empty"))
    repo.write("functions/gamma/requirements.txt", "no-such-dist==9.9\n")
    with pytest.raises(RequirementsError) as err:
        build_one(repo.path, repo.commit(), "gamma", tmp_path / "pip")
    assert "\n" not in str(err.value)
    assert "no-such-dist" in str(err.value)


def test_manifest_is_sorted_json_with_a_trailing_newline(repo, tmp_path):
    """manifest.json is stable text: sorted keys, one trailing newline."""
    pkg = build_one(repo.path, repo.commit(), "gamma", tmp_path / "pip")
    raw = zipfile.ZipFile(io.BytesIO(pkg.data)).read("manifest.json").decode()
    assert raw.endswith("}\n")
    assert json.dumps(json.loads(raw), indent=1, sort_keys=True, ensure_ascii=False) + "\n" == raw
