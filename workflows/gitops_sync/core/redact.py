"""Remove secrets from text before it reaches a log line, an error or a table.

URLs lose their user-info and query string (Flux does the same), and any known
secret value is masked wherever it appears.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_URL = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/@\s]*@)?(?P<rest>[^\s?#'\"]*)(?P<query>[?#][^\s'\"]*)?"
)


def redact_url(url: str) -> str:
    """Return ``url`` without credentials and without query string or fragment."""
    return _URL.sub(lambda m: m.group("scheme") + m.group("rest"), url)


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Strip URL credentials/queries from ``text`` and mask every secret in it."""
    out = redact_url(text)
    for secret in secrets:
        if secret and len(secret) >= 4:
            out = out.replace(secret, "***")
    return out
