"""function.toml rules and per-function change detection."""

from __future__ import annotations

import pytest

from gitops_sync.core.functions import (
    FunctionConfigError,
    RecordedFunction,
    detect_function_changes,
    parse_function_toml,
)
from gitops_sync.core.model import MODE_EXEC, MODE_FILE, SourceFile

GOOD = b'runtime = "python3.11"\nhandler = "main.handle"\n'


def test_defaults_come_from_the_directory_and_the_contract():
    """name defaults to the directory; memory 128, timeout 30."""
    spec = parse_function_toml("functions/process-orders/function.toml", GOOD)
    assert (spec.name, spec.memory_mb, spec.timeout_seconds) == ("process-orders", 128, 30)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'name = "Bad_Name"\n' + GOOD, "name"),
        (b'name = "ab"\n' + GOOD, "name"),
        (b'name = "-abc"\n' + GOOD, "name"),
        (b'runtime = "node18"\nhandler = "main.handle"\n', "runtime"),
        (b'runtime = "python3.11"\nhandler = "main"\n', "handler"),
        (GOOD + b"memory_mb = 63\n", "memory_mb"),
        (GOOD + b"memory_mb = 8193\n", "memory_mb"),
        (GOOD + b"timeout_seconds = 0\n", "timeout_seconds"),
        (GOOD + b"timeout_seconds = 901\n", "timeout_seconds"),
        (GOOD + b"timeout_seconds = true\n", "timeout_seconds"),
        (GOOD + b"colour = 1\n", "colour"),
        (GOOD + b"[environment]\nLOG_LEVEL = 3\n", "environment.LOG_LEVEL"),
        (GOOD + b'[environment]\n"1X" = "a"\n', "environment.1X"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_invalid_field_is_named_with_file_and_rule(body, field):
    """Each rule violation names the file, the field and the rule."""
    path = "functions/orders/function.toml"
    with pytest.raises(FunctionConfigError) as err:
        parse_function_toml(path, body)
    assert field == err.value.field
    assert str(err.value).startswith(f"{path}: field '{field}': ")


def test_broken_toml_names_the_file():
    """A syntax error names the file."""
    with pytest.raises(FunctionConfigError, match=r"^functions/x1y/function.toml: not valid TOML"):
        parse_function_toml("functions/x1y/function.toml", b"runtime = ")


def files(**blobs: str) -> dict[str, SourceFile]:
    return {
        p.replace("__", "/"): SourceFile(p.replace("__", "/"), MODE_FILE, b, 1)
        for p, b in blobs.items()
    }


def test_only_the_function_whose_files_changed_is_changed():
    """A change inside one function's directory changes only that function's hash."""
    tomls = {"functions/aaa/function.toml": GOOD, "functions/bbb/function.toml": GOOD}
    v1 = files(functions__aaa__main_py="1", functions__bbb__main_py="2", other__x="3")
    first = detect_function_changes(v1, tomls, {})
    assert first.changed == ["aaa", "bbb"]
    v2 = dict(v1, **files(functions__aaa__main_py="1b", other__x="3b"))
    second = detect_function_changes(v2, tomls, first.recorded())
    assert (second.changed, second.unchanged) == (["aaa"], ["bbb"])


def test_mode_change_changes_the_hash():
    """The executable bit is part of a function's content."""
    tomls = {"functions/aaa/function.toml": GOOD}
    v1 = files(functions__aaa__run_sh="1")
    first = detect_function_changes(v1, tomls, {})
    v2 = {"functions/aaa/run_sh": SourceFile("functions/aaa/run_sh", MODE_EXEC, "1", 1)}
    assert detect_function_changes(v2, tomls, first.recorded()).changed == ["aaa"]


def test_invalid_function_fails_alone_and_is_not_removed():
    """One bad function.toml is reported; the others still count; it is not 'removed'."""
    tomls = {"functions/aaa/function.toml": GOOD, "functions/bbb/function.toml": b"handler = 1"}
    recorded = {"bbb": RecordedFunction("old", "functions/bbb")}
    report = detect_function_changes(files(), tomls, recorded)
    assert report.changed == ["aaa"]
    assert [i["path"] for i in report.invalid] == ["functions/bbb/function.toml"]
    assert report.removed == []


def test_deleted_function_is_removed():
    """A recorded function whose directory is gone is reported removed."""
    report = detect_function_changes({}, {}, {"gone": RecordedFunction("h", "functions/gone")})
    assert report.removed == ["gone"]


def test_duplicate_names_fail_the_second():
    """Two directories claiming one name: the second is invalid, naming the first."""
    tomls = {
        "functions/aaa/function.toml": b'name = "same"\n' + GOOD,
        "functions/bbb/function.toml": b'name = "same"\n' + GOOD,
    }
    report = detect_function_changes(files(), tomls, {})
    assert report.changed == ["same"]
    assert "already used by functions/aaa/function.toml" in report.invalid[0]["error"]
