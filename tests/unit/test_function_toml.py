"""function.toml: the fields this round added, every bad field reported at once, include rules."""

from __future__ import annotations

import pytest

from gitops_sync.core.function_toml import FunctionConfigError, parse_function_toml

GOOD = b'runtime = "python3.11"\nhandler = "main.handle"\n'
PATH = "functions/orders/function.toml"


def test_new_fields_have_the_documented_defaults():
    """warm_workers 1, max_concurrency 10, no include, no secrets."""
    spec = parse_function_toml(PATH, GOOD)
    assert (1, 10, (), ()) == (spec.warm_workers, spec.max_concurrency, spec.include, spec.secrets)


def test_normalised_config_holds_every_field_and_secret_names_only():
    """The normalised config lists every field with defaults filled in."""
    spec = parse_function_toml(PATH, GOOD + b'secrets = ["DB_URL"]\n')
    assert {
        "name": "orders",
        "runtime": "python3.11",
        "handler": "main.handle",
        "memory_mb": 128,
        "timeout_seconds": 30,
        "warm_workers": 1,
        "max_concurrency": 10,
        "include": [],
        "secrets": ["DB_URL"],
        "environment": {},
    } == spec.normalised()


@pytest.mark.parametrize(
    ("line", "field"),
    [
        (b"warm_workers = 11\n", "warm_workers"),
        (b"warm_workers = -1\n", "warm_workers"),
        (b"max_concurrency = 0\n", "max_concurrency"),
        (b"max_concurrency = 101\n", "max_concurrency"),
        (b'include = "lib"\n', "include"),
        (b'include = ["../etc"]\n', "include"),
        (b'include = ["/abs"]\n', "include"),
        (b'include = [".github/x"]\n', "include"),
        (b'include = ["lib/not-an-ident"]\n', "include"),
        (b'include = ["a/common", "b/common"]\n', "include"),
        (b'secrets = ["1BAD"]\n', "secrets"),
        (b'secrets = ["A", "A"]\n', "secrets"),
        (b'secrets = ["A"]\n[environment]\nA = "x"\n', "environment.A"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_each_new_rule_names_file_field_and_rule(line, field):
    """Each rule of the new fields names the file, the field and the rule."""
    with pytest.raises(FunctionConfigError) as err:
        parse_function_toml(PATH, GOOD + line)
    assert field == err.value.field
    assert str(err.value).startswith(f"{PATH}: field '{field}': ")


def test_every_invalid_field_is_reported_not_only_the_first():
    """Three bad fields give one error naming all three, in file order of the rules."""
    body = b'runtime = "node18"\nhandler = "x"\nmemory_mb = 1\ncolour = 2\n'
    with pytest.raises(FunctionConfigError) as err:
        parse_function_toml(PATH, body)
    assert ["colour", "runtime", "handler", "memory_mb"] == [f for f, _ in err.value.problems]
    text = str(err.value)
    for field in ("colour", "runtime", "handler", "memory_mb"):
        assert f"field '{field}'" in text


def test_include_entries_are_normalised_without_trailing_slash():
    """'lib/common/' is kept as 'lib/common'."""
    spec = parse_function_toml(PATH, GOOD + b'include = ["lib/common/"]\n')
    assert ("lib/common",) == spec.include
