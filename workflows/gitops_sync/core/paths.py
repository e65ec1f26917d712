"""Rules about path names: what a workspace can hold and what a client may ask for."""

from __future__ import annotations

import posixpath
import re
from urllib.parse import unquote

# Azure Files (SMB semantics): these characters are refused in names, as are
# control characters and a trailing dot or space. Limits: 255 per component,
# 2048 per path.
_AZURE_FILES_BAD = re.compile(r'[\x00-\x1f"\\:|<>*?]')


def azure_files_name_problem(path: str) -> str | None:
    """Why ``path`` cannot exist on an Azure Files share, or None if it can."""
    if len(path) > 2048:
        return "path longer than 2048 characters (Azure Files limit)"
    for part in path.split("/"):
        if len(part) > 255:
            return "name longer than 255 characters (Azure Files limit)"
        if _AZURE_FILES_BAD.search(part):
            return 'name contains a character Azure Files refuses (\\ / : | < > * ? " or control)'
        if part.endswith((".", " ")):
            return "name ends with a dot or space (Azure Files refuses it)"
    return None


def safe_relative_path(raw: str) -> str | None:
    """Normalise a client-supplied workspace path, or None when it is not safe.

    Refuses absolute paths, ``..`` anywhere, backslashes, NUL and control
    characters, and the reserved ``.gitops-sync`` directory. Returns ``""`` for
    the root.
    """
    if raw is None or "\x00" in raw or "\\" in raw:
        return None
    if any(ord(c) < 0x20 or c == "\x7f" for c in raw):
        return None
    if raw.startswith("/"):
        return None
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        return None
    norm = posixpath.join(*parts) if parts else ""
    if norm.split("/", 1)[0] == ".gitops-sync":
        return None
    return norm


#: how many rounds of percent-decoding a client path is checked through
_DECODE_ROUNDS = 4


def safe_client_path(raw: str) -> str | None:
    """``safe_relative_path`` for a path that came in a URL, once already percent-decoded.

    A path that would turn unsafe after any further round of percent-decoding
    (``%2e%2e``, ``%2f``, ``%252e%252e``, ...) is refused too: some layer between
    the client and a store might decode it again. The reserved directory is
    refused in any letter case (case-insensitive stores). Returns ``""`` for the root.
    """
    if not isinstance(raw, str):
        return None
    norm = safe_relative_path(raw)
    if norm is None or norm.split("/", 1)[0].lower() == ".gitops-sync":
        return None
    # Both the path as sent and its normal form must survive every round of decoding:
    # "./%2f" is "%2f" once normalised, which decodes to "/".
    return norm if _survives_decoding(raw) and _survives_decoding(norm) else None


def _survives_decoding(path: str) -> bool:
    current = path
    for _ in range(_DECODE_ROUNDS):
        decoded = unquote(current)
        if decoded == current:
            return True
        again = safe_relative_path(decoded)
        if again is None or again.split("/", 1)[0].lower() == ".gitops-sync":
            return False
        current = decoded
    return False  # still decoding after every round: nobody writes names like that
