"""Deploy end to end on real Azurite and real git: only what changed, versions, pins, retention."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from gitops_sync import intake
from gitops_sync.adapters.git_source import GitSource
from gitops_sync.adapters.versions import VersionStore
from gitops_sync.deploy.build import scan_functions
from gitops_sync.deploy.reconcile import deploy_functions
from gitops_sync.runtime.interpreters import find_interpreter
from tests.deploy_support import TOML, add_function, handler_source
from tests.pipeline_support import Stack, delivery_headers, make_stack, push_payload

pytestmark = pytest.mark.azurite


@pytest.fixture()
def stack(storage: str, tmp_path: Path) -> Stack:
    return make_stack(storage, tmp_path)


def push(stack: Stack, message: str = "change") -> dict[str, Any]:
    """Commit, deliver the push, run the job; the job's deploy summary."""
    commit = stack.repo.commit(message)
    body = push_payload(commit)
    answer = intake.receive(stack.ctx, delivery_headers(body), body)
    assert answer.body is not None and answer.body["status"] == "queued", answer.body
    stack.run_queue()
    job = stack.ctx.jobs.get(answer.body["job_id"])
    assert job is not None and job.status == "succeeded", job and job.error
    assert job.summary is not None
    functions: dict[str, Any] = job.summary["functions"]
    return functions


def fn(stack: Stack, name: str) -> dict[str, Any]:
    return stack.ctx.functions.show(name)


def versions(stack: Stack, name: str) -> list[int]:
    return [v["version"] for v in stack.ctx.functions.list_versions(name)]


def three_functions(stack: Stack) -> None:
    add_function(stack.repo, "orders", "o1")
    add_function(stack.repo, "billing", "b1")
    stack.repo.write("functions/broken/function.toml", 'runtime = "node18"\nhandler = "x"\n')
    stack.repo.write("functions/broken/main.py", "x = 1\n")
    stack.repo.write("README.md", "hello\n")


def test_first_push_deploys_valid_functions_and_fails_the_invalid_one(stack):
    """Three functions, one invalid: two active at version 1, one failed naming file and field."""
    three_functions(stack)
    summary = push(stack)
    assert [{"name": "billing", "version": 1}, {"name": "orders", "version": 1}] == summary[
        "deployed"
    ]
    listed = {f["name"]: f for f in stack.ctx.functions.list_functions()}
    assert ("active", 1) == (listed["orders"]["status"], listed["orders"]["active_version"])
    assert ("active", 1) == (listed["billing"]["status"], listed["billing"]["active_version"])
    assert "failed" == listed["broken"]["status"]
    error = listed["broken"]["error"]
    assert "functions/broken/function.toml" in error
    assert "field 'runtime'" in error and "field 'handler'" in error
    assert None is listed["broken"]["active_version"]


def test_only_the_changed_function_gets_a_version_and_only_its_bytes_are_uploaded(stack):
    """Changing one function and an unrelated file: that function v2, the other stays v1."""
    three_functions(stack)
    push(stack)
    blobs_before = set(stack.ctx.deployer.blobs.names())
    add_function(stack.repo, "orders", "o2")
    stack.repo.write("README.md", "changed\n")
    summary = push(stack)
    assert [{"name": "orders", "version": 2}] == summary["deployed"]
    assert ["billing"] == summary["unchanged"]
    assert (2, 1) == (fn(stack, "orders")["active_version"], fn(stack, "billing")["active_version"])
    new_blobs = set(stack.ctx.deployer.blobs.names()) - blobs_before
    assert 1 == len(new_blobs) and next(iter(new_blobs)).startswith("orders/")
    sizes = {v["version"]: v["size"] for v in stack.ctx.functions.list_versions("orders")}
    assert sizes[2] == summary["bytes_uploaded"]


def test_shared_include_redeploys_exactly_the_functions_that_include_it(stack):
    """A change under an included directory: exactly its two includers get new versions."""
    add_function(stack.repo, "alpha", "a", 'include = ["lib/common"]\n')
    add_function(stack.repo, "beta", "b", 'include = ["lib/common"]\n')
    add_function(stack.repo, "gamma", "c")
    stack.repo.write("lib/common/util.py", "X = 1\n")
    push(stack)
    stack.repo.write("lib/common/util.py", "X = 2\n")
    summary = push(stack)
    assert [{"name": "alpha", "version": 2}, {"name": "beta", "version": 2}] == summary["deployed"]
    assert ["gamma"] == summary["unchanged"]


def test_rollback_pins_until_the_function_changes_in_git(stack):
    """Rollback pins v1; an unrelated push leaves it; a change deploys v3 and unpins."""
    add_function(stack.repo, "orders", "o1")
    push(stack)
    add_function(stack.repo, "orders", "o2")
    push(stack)
    rolled = stack.ctx.functions.rollback("orders")
    assert (1, True) == (rolled["active_version"], rolled["pinned"])
    stack.repo.write("README.md", "unrelated\n")
    summary = push(stack)
    assert [] == summary["deployed"]
    assert (1, True) == (fn(stack, "orders")["active_version"], fn(stack, "orders")["pinned"])
    add_function(stack.repo, "orders", "o3")
    summary = push(stack)
    assert [{"name": "orders", "version": 3}] == summary["deployed"]
    assert (3, False) == (fn(stack, "orders")["active_version"], fn(stack, "orders")["pinned"])


def test_rollback_to_a_named_version_and_errors_for_unknown_ones(stack):
    """--to N activates N; an unknown version or function is NotFound."""
    from gitops_sync.core.errors import NotFound

    for answer in ("o1", "o2", "o3"):
        add_function(stack.repo, "orders", answer)
        push(stack)
    assert 1 == stack.ctx.functions.rollback("orders", 1)["active_version"]
    assert 3 == stack.ctx.functions.rollback("orders")["active_version"]  # back to the one before
    with pytest.raises(NotFound):
        stack.ctx.functions.rollback("orders", 9)
    with pytest.raises(NotFound):
        stack.ctx.functions.rollback("nobody")


def test_deleted_directory_is_removed_with_history_and_comes_back(stack):
    """A vanished function is removed (versions kept); its directory's return reactivates it."""
    add_function(stack.repo, "orders", "o1")
    add_function(stack.repo, "billing", "b1")
    push(stack)
    stack.repo.remove("functions/billing")
    summary = push(stack)
    assert ["billing"] == summary["removed"]
    assert "removed" == fn(stack, "billing")["status"]
    assert [1] == versions(stack, "billing")
    add_function(stack.repo, "billing", "b1")
    push(stack)
    assert ("active", 1) == (fn(stack, "billing")["status"], fn(stack, "billing")["active_version"])


def test_invalid_toml_after_success_keeps_serving_the_last_good_version(stack):
    """An active function whose toml turns invalid is failed, still on v1, and says so."""
    add_function(stack.repo, "orders", "o1")
    push(stack)
    stack.repo.write("functions/orders/function.toml", TOML + "memory_mb = 1\n")
    summary = push(stack)
    assert ["orders"] == [f["name"] for f in summary["failed"]]
    shown = fn(stack, "orders")
    assert ("failed", 1) == (shown["status"], shown["active_version"])
    assert "still serving version 1" in shown["error"]
    assert "field 'memory_mb'" in shown["error"]


def test_same_commit_twice_creates_no_version_and_equal_content_reuses_the_package(stack):
    """A re-sync creates nothing; content equal to v1 later gets v3 and uploads nothing."""
    add_function(stack.repo, "orders", "o1")
    push(stack)
    assert {"deployed": [], "unchanged": ["orders"]} == {
        k: v for k, v in push(stack, "empty").items() if k in ("deployed", "unchanged")
    }
    add_function(stack.repo, "orders", "o2")
    push(stack)
    add_function(stack.repo, "orders", "o1")
    summary = push(stack)
    assert [{"name": "orders", "version": 3}] == summary["deployed"]
    assert 0 == summary["bytes_uploaded"]
    listed = stack.ctx.functions.list_versions("orders")
    assert listed[0]["sha256"] == listed[2]["sha256"]


def test_two_workers_racing_the_same_deployment_create_one_version(stack):
    """Eight threads deploy the same commit at once: exactly one version row."""
    add_function(stack.repo, "orders", "o1")
    commit = stack.repo.commit()
    source = GitSource(str(stack.repo.path))
    report = scan_functions(source, commit)
    barrier = threading.Barrier(8)
    results: list[Any] = []
    errors: list[BaseException] = []

    def race() -> None:
        try:
            barrier.wait()
            results.append(deploy_functions(stack.ctx.deployer, source, commit, report, "default"))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=race) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert [] == errors
    assert [1] == versions(stack, "orders")
    assert 1 == sum(len(r.deployed) for r in results)


def test_retention_keeps_ten_and_deletes_pruned_packages(stack):
    """After 12 deployments: 10 versions kept, the active among them, pruned blobs gone."""
    for i in range(12):
        add_function(stack.repo, "orders", f"o{i}")
        push(stack)
    kept = stack.ctx.functions.list_versions("orders")
    assert list(range(3, 13)) == [v["version"] for v in kept]
    assert [12] == [v["version"] for v in kept if v["active"]]
    blobs = set(stack.ctx.deployer.blobs.names("orders/"))
    assert {f"orders/{v['sha256']}.zip" for v in kept} == blobs


def test_delete_version_refuses_the_active_one(stack):
    """Deleting the active version is refused; another kept one goes, package included."""
    from gitops_sync.core.errors import Refused

    add_function(stack.repo, "orders", "o1")
    push(stack)
    add_function(stack.repo, "orders", "o2")
    push(stack)
    with pytest.raises(Refused):
        stack.ctx.functions.delete_version("orders", 2)
    old_blob = f"orders/{stack.ctx.functions.list_versions('orders')[0]['sha256']}.zip"
    stack.ctx.functions.delete_version("orders", 1)
    assert [2] == versions(stack, "orders")
    assert old_blob not in stack.ctx.deployer.blobs.names()


def test_crash_between_upload_and_record_is_completed_by_the_next_job(stack, monkeypatch):
    """Upload done, transaction lost (a crash): the retried job records exactly one version."""
    add_function(stack.repo, "orders", "o1")
    commit = stack.repo.commit()
    body = push_payload(commit)
    answer = intake.receive(stack.ctx, delivery_headers(body), body)
    assert answer.body is not None
    real = VersionStore.add_version
    calls = {"n": 0}

    def crash_once(self: VersionStore, *args: Any) -> bool:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("killed between upload and activation")
        return real(self, *args)

    monkeypatch.setattr(VersionStore, "add_version", crash_once)
    with pytest.raises(RuntimeError):
        stack.run_queue()
    assert ["orders/"] == [n[:7] for n in stack.ctx.deployer.blobs.names()]  # uploaded
    assert None is stack.ctx.deployer.versions.get_function("orders")  # not recorded
    job = stack.ctx.jobs.get(answer.body["job_id"])
    assert job is not None
    stack.ctx.queue.send(intake.job_message(job))  # the queue's redelivery
    stack.run_queue()
    assert [1] == versions(stack, "orders")
    assert 1 == fn(stack, "orders")["active_version"]


def test_unavailable_runtime_fails_that_function_with_the_reason(stack, tmp_path, monkeypatch):
    """A runtime this host cannot run fails its function; it is never run on another Python."""
    only_git = tmp_path / "bin"  # a PATH on which no other Python can be found
    only_git.mkdir()
    git = shutil.which("git")
    assert git is not None
    (only_git / "git").symlink_to(git)
    monkeypatch.setenv("PATH", str(only_git))
    find_interpreter.cache_clear()
    missing = "python3.13"
    add_function(stack.repo, "orders", "o1")
    stack.repo.write("functions/legacy/function.toml", f'runtime = "{missing}"\nhandler = "m.h"\n')
    stack.repo.write("functions/legacy/m.py", handler_source("x"))
    summary = push(stack)
    assert [{"name": "orders", "version": 1}] == summary["deployed"]
    [failed] = summary["failed"]
    assert "legacy" == failed["name"]
    assert f"{missing} is not available on this host" in failed["error"]
    find_interpreter.cache_clear()  # the next test sees the real PATH again
