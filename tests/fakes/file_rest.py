"""The File REST operations of the fake Azure Files service: one handler, one method each.

State lives in ``FakeFileService`` (``azure_files.py``); this module turns requests into it.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote, urlsplit
from xml.sax.saxutils import escape

if TYPE_CHECKING:
    from tests.fakes.azure_files import FakeFileService

PAGE_SIZE = 5000  # Azure's default and maximum page of a listing


class FakeError(Exception):
    """An answer the service gives instead of success (status + x-ms-error-code)."""

    def __init__(self, status: int, code: str) -> None:
        super().__init__(code)
        self.status = status
        self.code = code


@dataclass
class Node:
    name: str  # spelling as created (case-preserving)
    is_dir: bool
    etag: str
    modified: str
    data: bytearray = field(default_factory=bytearray)
    meta: dict[str, str] = field(default_factory=dict)
    children: dict[str, Node] = field(default_factory=dict)  # key: casefolded name


def _now() -> str:
    return formatdate(usegmt=True)


def _parse_range(value: str | None) -> tuple[int, int | None] | None:
    if not value:
        return None
    m = re.fullmatch(r"bytes=(\d+)-(\d*)", value.strip())
    if not m:
        raise FakeError(400, "InvalidHeaderValue")
    return int(m.group(1)), int(m.group(2)) if m.group(2) else None


class FileRestHandler(BaseHTTPRequestHandler):
    service: FakeFileService
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle's algorithm on, every response
    # with a body would wait ~40 ms for the client's delayed ACK.
    disable_nagle_algorithm = True
    # Headers and body go out in two writes; with Nagle on, each response with a body
    # would wait ~40 ms for the client's delayed ACK.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:
        pass  # tests stay quiet

    # ------------------------------------------------------------ plumbing
    def do_GET(self) -> None:
        self._serve("GET")

    def do_HEAD(self) -> None:
        self._serve("HEAD")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        parts = [unquote(p) for p in url.path.split("/") if p]
        svc = self.service
        try:
            if not parts or parts[0] != svc.account:
                raise FakeError(400, "InvalidUri")
            share, path = (parts[1] if len(parts) > 1 else ""), "/".join(parts[2:])
            op = query.get("comp") or query.get("restype") or ""
            with svc.lock:
                svc.requests.append((method, op, path))
            auth = self.headers.get("Authorization") or ""
            if not auth.startswith(f"SharedKey {svc.account}:") and "sig" not in query:
                raise FakeError(403, "AuthenticationFailed")  # every SDK request is signed
            fault = svc._take_fault(method, path)
            if fault is not None:
                raise FakeError(fault.status, fault.code)
            with svc.lock:
                status, headers, payload = self._dispatch(method, share, path, query, body)
        except FakeError as err:
            xml = (
                '<?xml version="1.0" encoding="utf-8"?><Error>'
                f"<Code>{err.code}</Code><Message>{err.code}</Message></Error>"
            ).encode()
            status, headers, payload = err.status, {"x-ms-error-code": err.code}, xml
            headers["Content-Type"] = "application/xml"
        self.send_response(status)
        headers.setdefault("x-ms-request-id", str(uuid.uuid4()))
        headers.setdefault("x-ms-version", self.headers.get("x-ms-version", "2026-10-06"))
        headers.setdefault("Date", _now())
        headers.setdefault("Content-Length", str(len(payload)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(payload)

    # ------------------------------------------------------------ routing
    def _dispatch(
        self, method: str, share: str, path: str, q: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        restype, comp = q.get("restype"), q.get("comp")
        if restype == "share" and not path:
            if method == "PUT" and comp is None:
                return self._create_share(share)
            if method in ("GET", "HEAD") and comp is None:
                root = self._share(share)
                return 200, {"ETag": root.etag, "Last-Modified": root.modified}, b""
            if method == "DELETE":
                self._share(share)
                del self.service.shares[share]
                return 202, {}, b""
        root = self._share(share)
        if restype == "directory":
            if method == "PUT" and comp is None:
                return self._create(root, path, is_dir=True)
            if method == "PUT" and comp == "rename":
                return self._rename(root, share, path, is_dir=True)
            if method == "DELETE":
                return self._delete(root, path, is_dir=True)
            if method == "GET" and comp == "list":
                return self._list(root, share, path, q)
            if method in ("GET", "HEAD") and comp is None:
                node = self._node(root, path, is_dir=True)
                return 200, {"ETag": node.etag, "Last-Modified": node.modified}, b""
        elif restype is None:
            if method == "PUT" and comp is None:
                if (self.headers.get("x-ms-type") or "").lower() != "file":
                    raise FakeError(400, "MissingRequiredHeader")
                size = int(self.headers.get("x-ms-content-length") or -1)
                if size < 0:
                    raise FakeError(400, "MissingRequiredHeader")
                return self._create(root, path, is_dir=False, size=size)
            if method == "PUT" and comp == "range":
                return self._put_range(self._node(root, path, is_dir=False), body)
            if method == "PUT" and comp == "properties":
                return self._set_properties(self._node(root, path, is_dir=False))
            if method == "PUT" and comp == "metadata":
                return self._set_metadata(self._node(root, path, is_dir=False))
            if method == "PUT" and comp == "rename":
                return self._rename(root, share, path, is_dir=False)
            if method in ("GET", "HEAD") and comp is None:
                return self._read(self._node(root, path, is_dir=False), method)
            if method == "DELETE" and comp is None:
                return self._delete(root, path, is_dir=False)
        raise FakeError(400, "UnsupportedHttpVerb")  # a call the store is not meant to make

    # ------------------------------------------------------------ helpers
    def _share(self, share: str) -> Node:
        root = self.service.shares.get(share)
        if root is None:
            raise FakeError(404, "ShareNotFound")
        return root

    def _parent(self, root: Node, path: str) -> tuple[Node, str]:
        parent_path, _, name = path.rpartition("/")
        parent = root
        for part in [p for p in parent_path.split("/") if p]:
            child = parent.children.get(part.casefold())
            if child is None or not child.is_dir:
                raise FakeError(404, "ParentNotFound")
            parent = child
        if not name:
            raise FakeError(400, "InvalidResourceName")
        return parent, name

    def _node(self, root: Node, path: str, *, is_dir: bool) -> Node:
        parent, name = self._parent(root, path)
        node = parent.children.get(name.casefold())
        if node is None:
            raise FakeError(404, "ResourceNotFound")
        if node.is_dir != is_dir:
            raise FakeError(409, "ResourceTypeMismatch")
        return node

    def _stamp(self, node: Node) -> dict[str, str]:
        node.etag = self.service.new_etag()
        node.modified = _now()
        return {"ETag": node.etag, "Last-Modified": node.modified}

    def _meta_headers(self) -> dict[str, str]:
        return {
            k.lower()[len("x-ms-meta-") :]: v
            for k, v in self.headers.items()
            if k.lower().startswith("x-ms-meta-")
        }

    # --------------------------------------------------------- operations
    def _create_share(self, share: str) -> tuple[int, dict[str, str], bytes]:
        if share in self.service.shares:
            raise FakeError(409, "ShareAlreadyExists")
        root = Node(share, True, self.service.new_etag(), _now())
        self.service.shares[share] = root
        return 201, {"ETag": root.etag, "Last-Modified": root.modified}, b""

    def _create(
        self, root: Node, path: str, *, is_dir: bool, size: int = 0
    ) -> tuple[int, dict[str, str], bytes]:
        parent, name = self._parent(root, path)
        existing = parent.children.get(name.casefold())
        if is_dir and existing is not None:
            raise FakeError(409, "ResourceAlreadyExists")
        if existing is not None and existing.is_dir:
            raise FakeError(409, "ResourceAlreadyExists")
        if existing is not None:  # Create File over a file truncates it, keeping its spelling
            node = existing
            node.data = bytearray(size)
            node.meta = self._meta_headers()
        else:
            node = Node(name, is_dir, "", "", bytearray(size), self._meta_headers())
            parent.children[name.casefold()] = node
        headers = self._stamp(node)
        headers["x-ms-request-server-encrypted"] = "true"
        return 201, headers, b""

    def _put_range(self, node: Node, body: bytes) -> tuple[int, dict[str, str], bytes]:
        rng = _parse_range(self.headers.get("x-ms-range") or self.headers.get("Range"))
        if rng is None or rng[1] is None:
            raise FakeError(400, "MissingRequiredHeader")
        start, end = rng
        if end >= len(node.data):  # ranges never grow a file: resize first
            raise FakeError(416, "InvalidRange")
        if (self.headers.get("x-ms-write") or "update").lower() == "clear":
            node.data[start : end + 1] = bytes(end - start + 1)
        else:
            if len(body) != end - start + 1:
                raise FakeError(400, "InvalidHeaderValue")
            node.data[start : end + 1] = body
        headers = self._stamp(node)
        headers["x-ms-request-server-encrypted"] = "true"
        return 201, headers, b""

    def _set_properties(self, node: Node) -> tuple[int, dict[str, str], bytes]:
        size = self.headers.get("x-ms-content-length")
        if size is not None:
            n = int(size)
            node.data = node.data[:n] + bytearray(max(0, n - len(node.data)))
        return 200, self._stamp(node), b""

    def _set_metadata(self, node: Node) -> tuple[int, dict[str, str], bytes]:
        node.meta = self._meta_headers()
        return 200, self._stamp(node), b""

    def _read(self, node: Node, method: str) -> tuple[int, dict[str, str], bytes]:
        size = len(node.data)
        headers = {
            "ETag": node.etag,
            "Last-Modified": node.modified,
            "x-ms-type": "File",
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
            "x-ms-server-encrypted": "true",
        }
        headers.update({f"x-ms-meta-{k}": v for k, v in node.meta.items()})
        rng = _parse_range(self.headers.get("x-ms-range") or self.headers.get("Range"))
        if rng is None or method == "HEAD":
            headers["Content-Length"] = str(size)
            return 200, headers, b"" if method == "HEAD" else bytes(node.data)
        start, end = rng
        if start >= size:  # Azure answers 416 for a range past the end (and on empty files)
            raise FakeError(416, "InvalidRange")
        end = size - 1 if end is None else min(end, size - 1)
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        return 206, headers, bytes(node.data[start : end + 1])

    def _delete(self, root: Node, path: str, *, is_dir: bool) -> tuple[int, dict[str, str], bytes]:
        parent, name = self._parent(root, path)
        node = self._node(root, path, is_dir=is_dir)
        if is_dir and node.children:
            raise FakeError(409, "DirectoryNotEmpty")
        del parent.children[name.casefold()]
        return 202, {}, b""

    def _rename(
        self, root: Node, share: str, path: str, *, is_dir: bool
    ) -> tuple[int, dict[str, str], bytes]:
        source = self.headers.get("x-ms-file-rename-source") or ""
        src_parts = [unquote(p) for p in urlsplit(source).path.split("/") if p]
        if src_parts[:2] != [self.service.account, share]:
            raise FakeError(400, "InvalidHeaderValue")
        src_path = "/".join(src_parts[2:])
        src_parent, src_name = self._parent(root, src_path)
        node = self._node(root, src_path, is_dir=is_dir)
        dst_parent, dst_name = self._parent(root, path)
        replace = (self.headers.get("x-ms-file-rename-replace-if-exists") or "").lower() == "true"
        existing = dst_parent.children.get(dst_name.casefold())
        if existing is node:
            # A case-only rename: Azure's answer is not documented, so the fake refuses
            # it rather than guess; the store must not depend on it.
            raise FakeError(409, "ResourceAlreadyExists")
        if existing is not None:
            if existing.is_dir or is_dir or not replace:
                raise FakeError(409, "ResourceAlreadyExists")
            # Replacing keeps the existing entry's spelling, as writes to it do.
            dst_name = existing.name
        if is_dir and path.casefold().startswith(src_path.casefold() + "/"):
            raise FakeError(400, "InvalidResourceName")  # a directory cannot move below itself
        del src_parent.children[src_name.casefold()]
        node.name = dst_name
        dst_parent.children[dst_name.casefold()] = node
        return 200, self._stamp(node), b""

    def _list(
        self, root: Node, share: str, path: str, q: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        node = self._node(root, path, is_dir=True) if path else root
        prefix = q.get("prefix") or ""
        entries = sorted(
            (c for c in node.children.values() if c.name.casefold().startswith(prefix.casefold())),
            key=lambda c: c.name,
        )
        marker = q.get("marker") or ""
        if marker:
            entries = [c for c in entries if c.name >= marker]
        limit = min(int(q.get("maxresults") or PAGE_SIZE), self.service.page_size)
        page, rest = entries[:limit], entries[limit:]
        xml = [
            '<?xml version="1.0" encoding="utf-8"?>',
            f'<EnumerationResults ServiceEndpoint="{escape(self.service.endpoint)}/" '
            f'ShareName="{escape(share)}" DirectoryPath="{escape(path)}">',
            f"<Prefix>{escape(prefix)}</Prefix>",
            f"<Marker>{escape(marker)}</Marker>" if marker else "",
            f"<MaxResults>{limit}</MaxResults>" if q.get("maxresults") else "",
            "<Entries>",
        ]
        # Only what was asked for: without include=Etag a listing carries no ETag.
        include = {i.strip().casefold() for i in (q.get("include") or "").split(",")}
        for c in page:
            props = ""
            if "timestamps" in include:
                props += f"<Last-Modified>{c.modified}</Last-Modified>"
            if "etag" in include:
                props += f"<Etag>{c.etag}</Etag>"
            if c.is_dir:
                xml.append(f"<Directory><Name>{escape(c.name)}</Name><Properties>{props}")
                xml.append("</Properties></Directory>")
            else:
                xml.append(f"<File><Name>{escape(c.name)}</Name><Properties>")
                xml.append(f"<Content-Length>{len(c.data)}</Content-Length>{props}")
                xml.append("</Properties></File>")
        xml.append("</Entries>")
        xml.append(f"<NextMarker>{escape(rest[0].name)}</NextMarker>" if rest else "<NextMarker/>")
        xml.append("</EnumerationResults>")
        return 200, {"Content-Type": "application/xml"}, "".join(xml).encode()
