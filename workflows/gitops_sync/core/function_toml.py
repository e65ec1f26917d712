"""``function.toml``: the fields, their rules and defaults, and the normalised config.

Every invalid field is reported at once (file, field, rule), so one push fixes
them all; an invalid file fails only its own function.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .function_report import FUNCTION_TOML as FUNCTION_TOML
from .function_report import FUNCTIONS_DIR as FUNCTIONS_DIR

# patterns, compiled by ``re`` on first use (a sync without functions compiles none)
NAME_RE = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"
HANDLER_RE = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$"
ENV_NAME_RE = r"^[A-Za-z_][A-Za-z0-9_]*$"
IDENT_RE = r"^[A-Za-z_][A-Za-z0-9_]*$"
SUPPORTED_RUNTIMES = ("python3.10", "python3.11", "python3.12", "python3.13")

#: (default, lowest, highest) of each integer field
INT_FIELDS: dict[str, tuple[int, int, int]] = {
    "memory_mb": (128, 64, 8192),
    "timeout_seconds": (30, 1, 900),
    "warm_workers": (1, 0, 10),
    "max_concurrency": (10, 1, 100),
}
DEFAULT_MEMORY_MB = INT_FIELDS["memory_mb"][0]
DEFAULT_TIMEOUT_SECONDS = INT_FIELDS["timeout_seconds"][0]
FIELDS = ("name", "runtime", "handler", *INT_FIELDS, "include", "secrets", "environment")


class FunctionConfigError(ValueError):
    """Invalid ``function.toml``; ``str()`` names the file and every bad field with its rule."""

    def __init__(self, path: str, problems: list[tuple[str | None, str]]) -> None:
        parts = [f"field '{f}': {rule}" if f else rule for f, rule in problems]
        super().__init__(f"{path}: " + "; ".join(parts))
        self.path = path
        self.problems = problems
        self.field = problems[0][0] if problems else None

    @classmethod
    def one(cls, path: str, field_name: str | None, rule: str) -> FunctionConfigError:
        return cls(path, [(field_name, rule)])


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    name: str
    directory: str  # e.g. "functions/process-orders"
    runtime: str
    handler: str
    memory_mb: int = DEFAULT_MEMORY_MB
    timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS
    warm_workers: int = 1
    max_concurrency: int = 10
    include: tuple[str, ...] = ()
    secrets: tuple[str, ...] = ()
    environment: Mapping[str, str] = field(default_factory=dict)

    def normalised(self) -> dict[str, Any]:
        """The config as deployed and hashed: every field, defaults filled, secret NAMES only."""
        return {
            "name": self.name,
            "runtime": self.runtime,
            "handler": self.handler,
            "memory_mb": self.memory_mb,
            "timeout_seconds": self.timeout_seconds,
            "warm_workers": self.warm_workers,
            "max_concurrency": self.max_concurrency,
            "include": list(self.include),
            "secrets": list(self.secrets),
            "environment": dict(sorted(self.environment.items())),
        }

    @classmethod
    def from_normalised(cls, config: Mapping[str, Any], directory: str = "") -> FunctionSpec:
        return cls(
            name=str(config["name"]),
            directory=directory or f"{FUNCTIONS_DIR}/{config['name']}",
            runtime=str(config["runtime"]),
            handler=str(config["handler"]),
            memory_mb=int(config.get("memory_mb", DEFAULT_MEMORY_MB)),
            timeout_seconds=int(config.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS)),
            warm_workers=int(config.get("warm_workers", 1)),
            max_concurrency=int(config.get("max_concurrency", 10)),
            include=tuple(config.get("include", ())),
            secrets=tuple(config.get("secrets", ())),
            environment=dict(config.get("environment", {})),
        )


def include_dir_problem(value: object) -> str | None:
    """Why ``value`` cannot be an ``include`` entry (a repository directory), or None."""
    if not isinstance(value, str) or not value:
        return f"entries must be repository directory paths like 'lib/common' (got {value!r})"
    parts = value.strip("/").split("/")
    if value.startswith("/") or "\\" in value or any(p in ("", ".", "..") for p in parts):
        return f"'{value}' must be a relative path inside the repository, without '.' or '..'"
    if parts[0] in (".github", ".gitops-sync"):
        return f"'{value}' is never synced, so it cannot be included"
    if not re.match(IDENT_RE, parts[-1]):
        return (
            f"'{value}': the last part is imported by name, so it must be a Python identifier"
            " (letters, digits, '_')"
        )
    return None


def _names(doc: dict[str, Any], key: str, problems: list[tuple[str | None, str]]) -> list[str]:
    value = doc.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.append((key, f"must be a list of strings (got {value!r})"))
        return []
    if len(set(value)) != len(value):
        problems.append((key, "must not repeat an entry"))
    return value


def parse_function_toml(path: str, data: bytes) -> FunctionSpec:
    """Parse and validate one ``functions/<dir>/function.toml``; every bad field is reported."""
    import tomllib  # deferred: a sync whose tree has no function.toml never needs it

    directory = path.rsplit("/", 1)[0]
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise FunctionConfigError.one(path, None, "not valid UTF-8") from exc
    except tomllib.TOMLDecodeError as exc:
        raise FunctionConfigError.one(path, None, f"not valid TOML ({exc})") from exc
    problems: list[tuple[str | None, str]] = []
    for unknown in sorted(set(doc) - set(FIELDS)):
        problems.append((unknown, f"unknown field; allowed: {', '.join(sorted(FIELDS))}"))

    name = doc.get("name", directory.rsplit("/", 1)[-1])
    if not isinstance(name, str) or not (3 <= len(name) <= 63) or not re.match(NAME_RE, name):
        origin = "" if "name" in doc else " (default: the directory name)"
        problems.append(
            (
                "name",
                "must be 3-63 characters of a-z, 0-9 and '-', not starting or ending with '-'"
                f" (got {name!r}{origin})",
            )
        )
    runtime = doc.get("runtime")
    if runtime not in SUPPORTED_RUNTIMES:
        problems.append(
            ("runtime", f"must be one of {', '.join(SUPPORTED_RUNTIMES)} (got {runtime!r})")
        )
    handler = doc.get("handler")
    if not isinstance(handler, str) or not re.match(HANDLER_RE, handler):
        problems.append(
            ("handler", f"must be 'module.function', e.g. 'main.handle' (got {handler!r})")
        )
    ints: dict[str, int] = {}
    for key, (default, lo, hi) in INT_FIELDS.items():
        value = doc.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            problems.append((key, f"must be an integer from {lo} to {hi} (got {value!r})"))
        else:
            ints[key] = value

    include = _names(doc, "include", problems)
    for entry in include:
        if (why := include_dir_problem(entry)) is not None:
            problems.append(("include", why))
    bases = [e.strip("/").rsplit("/", 1)[-1] for e in include]
    if len(set(bases)) != len(bases):
        problems.append(("include", "two entries end in the same name; each is imported by it"))

    secrets = _names(doc, "secrets", problems)
    for secret in secrets:
        if not re.match(ENV_NAME_RE, secret):
            problems.append(("secrets", f"'{secret}' is not a valid app setting name"))

    env = doc.get("environment", {})
    if not isinstance(env, dict):
        problems.append(("environment", 'must be a table of NAME = "value"'))
        env = {}
    for key, value in env.items():
        if not re.match(ENV_NAME_RE, key):
            problems.append((f"environment.{key}", "must be a valid variable name"))
        elif not isinstance(value, str):
            problems.append((f"environment.{key}", f"must be a string (got {value!r})"))
        elif key in secrets:
            problems.append((f"environment.{key}", "is also named in 'secrets'; choose one"))
    if problems:
        raise FunctionConfigError(path, problems)
    return FunctionSpec(
        name=name,
        directory=directory,
        runtime=str(runtime),
        handler=str(handler),
        include=tuple(e.strip("/") for e in include),
        secrets=tuple(secrets),
        environment=dict(env),
        **ints,
    )
