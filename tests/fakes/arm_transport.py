"""Azure Resource Manager at the HTTP transport boundary: an azure-core ``HttpTransport`` that
records every request the real SDK client sends and answers from a table of canned responses."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from azure.core.credentials import AccessToken
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest._http_response_impl import RestHttpClientTransportResponse


@dataclass(frozen=True)
class Sent:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any  # parsed JSON, or None
    headers: dict[str, str]


class _Raw:
    """What ``RestHttpClientTransportResponse`` reads: the shape of ``http.client.HTTPResponse``."""

    def __init__(self, status: int, body: bytes) -> None:
        self.status, self.reason, self._body = status, "OK" if status < 400 else "Error", body

    def getheaders(self) -> list[tuple[str, str]]:
        return [("Content-Type", "application/json"), ("Content-Length", str(len(self._body)))]

    def read(self) -> bytes:
        return self._body

    def close(self) -> None:
        pass


@dataclass
class RecordingTransport(HttpTransport):
    """Answers ``responses[(METHOD, path)]`` = (status, JSON body); 404 for anything else."""

    responses: dict[tuple[str, str], tuple[int, Any]] = field(default_factory=dict)
    sent: list[Sent] = field(default_factory=list)

    def send(self, request: Any, **kwargs: Any) -> RestHttpClientTransportResponse:
        parts = urlsplit(request.url)
        raw_body = request.content if hasattr(request, "content") else request.body
        body = json.loads(raw_body) if raw_body else None
        self.sent.append(
            Sent(request.method, parts.path, parse_qs(parts.query), body, dict(request.headers))
        )
        status, answer = self.responses.get((request.method, parts.path), (404, {"error": {
            "code": "NotFound", "message": "no canned response"}}))  # fmt: skip
        data = b"" if answer is None else json.dumps(answer).encode()
        return RestHttpClientTransportResponse(
            request=request, internal_response=_Raw(status, data)
        )

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> RecordingTransport:
        return self

    def __exit__(self, *args: Any) -> None:
        pass


class StaticToken:
    """A credential that always hands out the same bearer token."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("static-test-token", 4102444800)  # 2100-01-01
