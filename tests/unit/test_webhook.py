"""The pure webhook core: signatures, push parsing and classification."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from gitops_sync.core.webhook import (
    BadDelivery,
    Push,
    json_object,
    parse_push,
    repository_name,
    sign,
    signature_valid,
    signature_well_formed,
    why_ignored,
)
from gitops_sync.jobs import fit_summary

BODY = b'{"ref": "refs/heads/main"}'
SECRET = "It's a Secret to Everybody"


def test_sign_matches_githubs_documented_example():
    """``sign`` reproduces the example signature in GitHub's webhook documentation."""
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert sign(SECRET, b"Hello, World!") == expected


@pytest.mark.parametrize(
    ("header", "valid"),
    [
        pytest.param(sign(SECRET, BODY), True, id="right"),
        pytest.param(
            sign(SECRET, BODY).upper().replace("SHA256=", "sha256="), True, id="upper-hex"
        ),
        pytest.param(sign("other", BODY), False, id="other-secret"),
        pytest.param(sign(SECRET, BODY + b" "), False, id="other-body"),
        pytest.param(
            "sha1=" + hmac.new(SECRET.encode(), BODY, hashlib.sha1).hexdigest(), False, id="sha1"
        ),
        pytest.param(sign(SECRET, BODY)[7:], False, id="no-prefix"),
        pytest.param(sign(SECRET, BODY)[:-1], False, id="short"),
        pytest.param("sha256=" + "g" * 64, False, id="not-hex"),
        pytest.param("", False, id="empty"),
        pytest.param(None, False, id="missing"),
    ],
)
def test_signature_valid(header: str | None, valid: bool):
    """Only a well-formed sha256 HMAC of the exact body with the secret is accepted."""
    assert signature_valid(SECRET, BODY, header) is valid


def test_no_secret_accepts_nothing():
    """Without a secret no signature verifies, not even one made with an empty key."""
    assert signature_valid(None, BODY, sign("", BODY)) is False
    assert signature_valid("", BODY, sign("", BODY)) is False


def test_well_formed_is_only_about_shape():
    """``signature_well_formed`` checks the header's shape, not its value."""
    assert signature_well_formed("sha256=" + "0" * 64)
    assert not signature_well_formed("sha256=" + "0" * 63)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(b'{"a": 1}', {"a": 1}, id="object"),
        pytest.param(b"[1]", None, id="array"),
        pytest.param(b'"text"', None, id="string"),
        pytest.param(b"\xff\xfe", None, id="not-utf8"),
        pytest.param(b"[" * 100_000, None, id="deep"),
        pytest.param(b"", None, id="empty"),
    ],
)
def test_json_object(body: bytes, expected):
    """Only a JSON object comes back; anything else is None, never an exception."""
    assert json_object(body) == expected


def _push(**fields) -> dict:
    doc = {
        "ref": "refs/heads/main",
        "after": "A" * 40,
        "repository": {"full_name": "o/r", "clone_url": "https://evil.invalid/x.git"},
        "head_commit": {"id": "b" * 40},
    }
    doc.update(fields)
    return {k: v for k, v in doc.items() if v is not None}


def test_parse_push_reads_after_never_head_commit():
    """The commit is ``after`` (lower-cased); ``head_commit`` and the clone URL are not used."""
    assert parse_push(_push()) == Push("o/r", "refs/heads/main", "a" * 40, False)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(_push(ref=None), id="no-ref"),
        pytest.param(_push(ref=5), id="ref-not-string"),
        pytest.param(_push(after=None), id="no-after"),
        pytest.param(_push(after="xyz"), id="after-not-commit"),
        pytest.param(_push(repository=None), id="no-repository"),
        pytest.param(_push(repository={"full_name": 3}), id="full-name-not-string"),
        pytest.param(_push(repository="o/r"), id="repository-not-object"),
    ],
)
def test_parse_push_rejects_incomplete_pushes(payload: dict):
    """A push missing ref, after or repository.full_name is a ``BadDelivery``."""
    with pytest.raises(BadDelivery):
        parse_push(payload)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(_push(after="0" * 40, head_commit=None), id="zero-after"),
        pytest.param(_push(deleted=True, after="0" * 40), id="deleted-flag"),
    ],
)
def test_branch_deletion_is_recognised(payload: dict):
    """``after`` all zeros or ``deleted: true`` marks a deletion, which is never synced."""
    push = parse_push(payload)
    assert push.deleted
    reason = why_ignored(push, "main")
    assert reason is not None and "deleted" in reason


@pytest.mark.parametrize(
    ("ref", "word"),
    [
        pytest.param("refs/heads/feature", "feature", id="other-branch"),
        pytest.param("refs/tags/v1", "tag", id="tag"),
        pytest.param("refs/heads/" + "x" * 5000, "...", id="long-ref-cut"),
    ],
)
def test_other_refs_are_ignored_with_a_reason(ref: str, word: str):
    """Pushes to other branches and tags are ignored, with a short reason naming them."""
    reason = why_ignored(parse_push(_push(ref=ref)), "main")
    assert reason is not None and word in reason and len(reason) < 300


def test_tracked_branch_is_not_ignored():
    """A push to the tracked branch has no reason to be ignored."""
    assert why_ignored(parse_push(_push(ref="refs/heads/prod")), "prod") is None


def test_repository_name_tolerates_any_shape():
    """``repository_name`` returns the name or None, whatever the payload holds."""
    assert repository_name({"repository": {"full_name": "o/r"}}) == "o/r"
    for payload in (None, {}, {"repository": []}, {"repository": {"full_name": ""}}):
        assert repository_name(payload) is None


def test_fit_summary_trims_skipped_to_fit_one_table_property():
    """A summary with a huge skipped list is cut to fit the limit, keeping the total."""
    skipped = [{"path": f"dir/{i:06d}-" + "n" * 80, "reason": "symlink"} for i in range(5000)]
    summary = {"commit": "c" * 40, "added": 1, "skipped": skipped, "functions": {"invalid": []}}
    fitted = fit_summary(summary, limit=30_000)
    assert len(json.dumps(fitted)) <= 30_000
    assert fitted["skipped_total"] == 5000
    assert 0 < len(fitted["skipped"]) < 5000
    assert fitted["skipped"][0] == skipped[0]
    assert fit_summary({"commit": "c", "skipped": []}) == {"commit": "c", "skipped": []}
