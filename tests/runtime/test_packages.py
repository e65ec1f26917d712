"""The package cache: verified before unpacking, unpacked once, read-only, reused, pruned, safe."""

from __future__ import annotations

import hashlib
import io
import stat
import threading
import zipfile
from pathlib import Path

import pytest

from gitops_sync.runtime import FunctionRuntime, VersionRef

from . import handlers
from .conftest import SETTINGS
from .packages import PackageStore, make_package


def _zip(entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for info, data in entries:
            zf.writestr(info, data)
    return buffer.getvalue()


def _ref_for(name: str, data: bytes, sha256: str = "c" * 64) -> VersionRef:
    config = {"runtime": "python3.11", "handler": "main.handle", "warm_workers": 0}
    return VersionRef(name, 1, sha256, hashlib.sha256(data).hexdigest(), config)


def test_a_package_whose_bytes_do_not_match_is_refused(
    runtime: FunctionRuntime, store: PackageStore
) -> None:
    """Bytes whose sha256 is not package_sha256 answer 502 and nothing is unpacked."""
    ref = store.add("echo", 1, {"main.py": handlers.ECHO}, warm_workers=0)
    store.packages[("echo", 1)] += b"tampered"
    runtime.set_active("echo", ref)

    result = runtime.invoke("echo", b"{}")

    assert 502 == result.status
    assert "refused: sha256" in result.json()["error"]
    assert not runtime.packages.path_for(ref).exists()


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param("../escape.py", id="dot-dot"),
        pytest.param("/etc/evil.py", id="absolute"),
        pytest.param("a/../../escape.py", id="nested-dot-dot"),
        pytest.param("link", id="symlink"),
    ],
)
def test_unsafe_entries_are_refused(runtime: FunctionRuntime, tmp_path: Path, entry: str) -> None:
    """A ZIP with a '..' path, an absolute path or a link is refused whole (502)."""
    info = zipfile.ZipInfo(entry)
    if entry == "link":
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
    data = _zip([("manifest.json", b'{"sha256": "' + b"c" * 64 + b'"}'), (info, b"/etc/passwd")])
    ref = _ref_for("unsafe", data)
    packages = {"unsafe": data}
    rt = FunctionRuntime(
        cache_dir=tmp_path / "c2",
        load_package=lambda r: packages[r.name],
        lookup_setting=SETTINGS.get,
    )
    try:
        rt.set_active("unsafe", ref)
        result = rt.invoke("unsafe", b"{}")
    finally:
        rt.close()

    assert 502 == result.status
    assert "refused" in result.json()["error"]
    assert not (tmp_path / "escape.py").exists()
    assert not rt.packages.path_for(ref).exists()


def test_a_manifest_naming_another_content_hash_is_refused(
    runtime: FunctionRuntime, store: PackageStore
) -> None:
    """The manifest's content sha256 must be the version's sha256."""
    ref, data = make_package("echo", 1, {"main.py": handlers.ECHO}, warm_workers=0)
    forged = VersionRef(ref.name, ref.version, "d" * 64, ref.package_sha256, ref.config)
    store.packages[("echo", 1)] = data
    runtime.set_active("echo", forged)

    result = runtime.invoke("echo", b"{}")

    assert 502 == result.status
    assert "manifest.json" in result.json()["error"]


def test_a_failing_load_is_502_not_an_exception(
    runtime: FunctionRuntime, store: PackageStore
) -> None:
    """load_package raising becomes a 502 answer naming the cause."""
    runtime.set_active("echo", store.add("echo", 1, {"main.py": handlers.ECHO}, warm_workers=0))
    store.fail_with = ConnectionError("blob service unreachable")

    result = runtime.invoke("echo", b"{}")

    assert 502 == result.status
    assert "blob service unreachable" in result.json()["error"]


def test_concurrent_first_invocations_unpack_once(
    runtime: FunctionRuntime, store: PackageStore
) -> None:
    """Eight invocations racing on a cold version load and unpack its package once."""
    ref = store.add("echo", 1, {"main.py": handlers.ECHO}, warm_workers=0, max_concurrency=8)
    runtime.set_active("echo", ref)
    results: list[int] = []
    threads = [
        threading.Thread(target=lambda: results.append(runtime.invoke("echo", b"{}").status))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [200] * 8 == results
    assert [("echo", 1)] == store.loads


def test_unpacked_files_are_read_only(runtime: FunctionRuntime, store: PackageStore) -> None:
    """Files and folders of an unpacked version carry no write permission."""
    ref = store.add("echo", 1, {"main.py": handlers.ECHO, "data/x.txt": "x"}, warm_workers=0)
    runtime.set_active("echo", ref)
    assert 200 == runtime.invoke("echo", b"{}").status

    root = runtime.packages.path_for(ref)
    modes = [p.stat().st_mode for p in [root, *root.rglob("*")]]
    assert [] == [oct(m) for m in modes if m & 0o222]


def test_the_cache_is_reused_across_restarts(tmp_path: Path, store: PackageStore) -> None:
    """A second runtime over the same cache folder runs the version without loading it again."""
    ref = store.add("echo", 1, {"main.py": handlers.ECHO}, warm_workers=0)
    for _ in range(2):
        with FunctionRuntime(
            cache_dir=tmp_path / "cache", load_package=store, lookup_setting=SETTINGS.get
        ) as rt:
            rt.set_active("echo", ref)
            assert 200 == rt.invoke("echo", b"{}").status

    assert [("echo", 1)] == store.loads


def test_prune_deletes_versions_no_longer_kept(
    runtime: FunctionRuntime, store: PackageStore
) -> None:
    """prune_cache removes unpacked versions outside the kept set, never the active one."""
    refs = [
        store.add("ver", n, {"main.py": handlers.VERSION.format(version=n)}, warm_workers=0)
        for n in (1, 2, 3)
    ]
    for ref in refs:
        runtime.set_active("ver", ref)
        assert 200 == runtime.invoke("ver", b"{}").status

    runtime.prune_cache("ver", kept_versions={1})

    exists = [runtime.packages.path_for(ref).exists() for ref in refs]
    assert [True, True, True] == exists  # 2 is the previous (rollback) and 3 the active version
    runtime.set_active("ver", refs[0])  # rollback: 1 active, 3 previous
    runtime.prune_cache("ver", kept_versions=set())
    assert [True, False, True] == [runtime.packages.path_for(ref).exists() for ref in refs]
