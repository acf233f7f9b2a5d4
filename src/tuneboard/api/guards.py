"""What a request to `tuneboard api` passes before a route runs: a Host header naming this server (so a web
page cannot reach a local API through DNS rebinding), the API key, and for a POST a body declared as JSON
(a cross-site form cannot send one without the browser asking first) within the size limit.

Interface layer (api/): FastAPI dependencies that raise protocol.ApiError; server.py puts them before its routes.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable

from fastapi import Request
from starlette.requests import ClientDisconnect

from .protocol import ApiError

MAX_BODY_BYTES = 4 * 2**20  # a request body beyond this is refused (413): ~1M tokens of text
LOOPBACK = ("localhost", "127.0.0.1", "::1")
WILDCARDS = ("", "0.0.0.0", "::")  # bound to every address of the machine


def host_name(header: str | None) -> str | None:
    """The host in a Host header ("name", "name:port", "[v6]:port"), lower-cased; None when malformed."""
    text = (header or "").strip().lower()
    if text.startswith("["):
        name, closed, rest = text[1:].partition("]")
        if not closed or (rest and not rest.startswith(":")):
            return None
        port = rest[1:]
    else:
        name, _, port = text.partition(":")
    if port and not port.isdigit():
        return None
    return name.rstrip(".") or None


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class HostCheck:
    """Answers requests whose Host is localhost, a loopback address, the address the server is bound to, or
    a name in `allowed` ("*": any). Bound to every address (0.0.0.0), any IP address is the server's own; a
    name still has to be listed, since a rebound name is the attack."""

    def __init__(self, bound_host: str, allowed: Iterable[str] = ()) -> None:
        names = [n.strip().strip("[]").lower() for n in allowed if n.strip()]
        self.any = "*" in names
        bound = bound_host.strip().strip("[]").lower()
        self.wildcard = bound in WILDCARDS
        self.names = {*LOOPBACK, *names, bound} - {""}

    def allows(self, header: str | None) -> bool:
        name = host_name(header)
        if self.any or name in self.names:
            return True
        return name is not None and self.wildcard and _is_ip(name)

    async def __call__(self, request: Request) -> None:
        header = request.headers.get("host")
        if not self.allows(header):
            raise ApiError(
                400,
                f"Host {header!r} is not a name of this server; if it is one, add it to api_allowed_hosts",
                param="Host",
            )


class KeyCheck:
    """With an API key set, every /v1 request must carry `Authorization: Bearer <key>`."""

    def __init__(self, api_key: str | None) -> None:
        self.expected = f"Bearer {api_key}".encode() if api_key else None

    async def __call__(self, request: Request) -> None:
        given = request.headers.get("authorization", "").encode()
        if self.expected is not None and not hmac.compare_digest(given, self.expected):
            raise ApiError(401, "invalid or missing API key")


class JsonBody:
    """The body of a POST: declared as JSON (415 otherwise) and at most `limit` bytes (413 beyond it,
    checked against Content-Length first, then while the body is read)."""

    def __init__(self, limit: int = MAX_BODY_BYTES) -> None:
        self.limit = limit

    async def __call__(self, request: Request) -> bytes:
        kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if kind != "application/json":
            raise ApiError(415, "send the request as JSON, with the header Content-Type: application/json")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            raise self._too_large()
        body = bytearray()
        try:
            async for chunk in request.stream():
                body += chunk
                if len(body) > self.limit:
                    raise self._too_large()
        except ClientDisconnect:
            raise ApiError(400, "the client left before its request was read") from None
        return bytes(body)

    def _too_large(self) -> ApiError:
        return ApiError(413, f"the request body is larger than {self.limit} bytes")
