"""A small ASGI application for what the outside world sends a shop: clicks on tracked links, Solapi's
delivery reports and one-click unsubscribes (RFC 8058).

It is a plain ASGI callable (no web framework), so it runs under any ASGI server and mounts in any ASGI
framework (``app.mount("/t", create_app(shop))`` in Starlette or FastAPI).  Routes, relative to where it is
mounted:

- ``GET /r/<token>``: a click (:meth:`Shop.record_click <shopcrm.Shop.record_click>`): ``302`` to the link's
  target, ``404`` for a token the shop did not sign or a message it does not know;
- ``GET /u/<token>``: a page with one button that unsubscribes (a GET never unsubscribes: RFC 8058 section 4,
  mail scanners follow links); ``POST /u/<token>`` with the body ``List-Unsubscribe=One-Click`` (what a
  mailbox provider sends, as ``multipart/form-data`` or URL-encoded) or the page's button: the opt-out (:meth:`Shop.record_unsubscribe
  <shopcrm.Shop.record_unsubscribe>`), ``200``; again: ``200``, nothing changes; a bad token: ``404``;
- ``POST /hooks/solapi/<secret>``: Solapi's delivery-report webhook, applied with
  :meth:`Shop.record_deliveries <shopcrm.Shop.record_deliveries>`.  Solapi documents no signature on its
  webhooks, so the URL you register carries a shared secret (``solapi_secret``), compared in constant time;
  without one the route does not exist.

The shop is synchronous: every call into it runs in a worker thread (``anyio.to_thread``), one at a time (a
lock: a DuckDB connection is not shared by threads), so the event loop never waits for the database.
"""

from __future__ import annotations

import email
import email.policy
import hmac
import json
import re
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from html import escape
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote

import anyio.to_thread

if TYPE_CHECKING:
    from shopcrm.shop import Shop

__all__ = ["create_app"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_TOKEN = r"([A-Za-z0-9_-]{20,400})"
_CLICK = re.compile(rf"/r/{_TOKEN}/?")
_UNSUBSCRIBE = re.compile(rf"/u/{_TOKEN}/?")
_SOLAPI = re.compile(r"/hooks/solapi/([^/]{1,200})/?")
#: characters a Location header keeps as they are (the rest, e.g. Korean in a path, is percent-encoded)
_URL_SAFE = ":/?#[]@!$&'()*+,;=%~"
#: the largest request body read (a Solapi report batch is well under it)
MAX_BODY = 1 << 20


class _BodyTooLarge(Exception):
    pass


def create_app(
    shop: Shop, *, solapi_secret: str | None = None, clock: Callable[[], datetime] | None = None,
) -> ASGIApp:
    """The ASGI application for ``shop`` (see the module docstring for its routes).

    ``solapi_secret`` enables the delivery-report webhook at ``/hooks/solapi/<solapi_secret>`` (at least 16
    characters); ``clock`` gives the time clicks and unsubscribes are recorded at (default: now, UTC)."""
    if solapi_secret is not None and len(solapi_secret) < 16:
        raise ValueError("solapi_secret must be at least 16 characters (e.g. secrets.token_urlsafe(24)): it is "
                         "the only thing that authenticates Solapi's webhook")
    now = clock or (lambda: datetime.now(UTC).replace(tzinfo=None))
    lock = threading.Lock()

    async def call(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        def run() -> Any:
            with lock:
                return function(*args, **kwargs)

        return await anyio.to_thread.run_sync(run)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path = _relative(scope)
        method = scope.get("method", "GET")
        try:
            if match := _CLICK.fullmatch(path):
                if method != "GET":
                    await _text(send, 405, "use GET", allow="GET")
                    return
                target = await call(shop.record_click, match.group(1), at=now())
                if target is None:
                    await _text(send, 404, "this link is not valid")
                    return
                location = quote(target, safe=_URL_SAFE).encode("ascii")
                await _respond(send, 302, b"", [(b"location", location), (b"cache-control", b"no-store"),
                                                (b"referrer-policy", b"no-referrer")])
                return
            if match := _UNSUBSCRIBE.fullmatch(path):
                await _unsubscribe(shop, scope, match.group(1), method, receive, send, call, now)
                return
            if (match := _SOLAPI.fullmatch(path)) and solapi_secret is not None:
                if not hmac.compare_digest(match.group(1).encode(), solapi_secret.encode()):
                    await _text(send, 404, "not found")
                    return
                if method != "POST":
                    await _text(send, 405, "use POST", allow="POST")
                    return
                await _solapi(receive, send, call, shop)
                return
            await _text(send, 404, "not found")
        except _BodyTooLarge as error:
            await _text(send, 413, f"the request body is larger than {error.args[0]:,} bytes")

    return app


def _relative(scope: Scope) -> str:
    """The request path below where the app is mounted (frameworks pass the full path and a ``root_path``)."""
    path = str(scope.get("path", "/"))
    root = str(scope.get("root_path", "") or "")
    if root and path.startswith(root):
        path = path[len(root):]
    return path or "/"


async def _unsubscribe(
    shop: Shop, scope: Scope, token: str, method: str, receive: Receive, send: Send, call: Callable[..., Awaitable[Any]],
    now: Callable[[], datetime],
) -> None:
    if method == "GET":  # never unsubscribes (RFC 8058): a page whose button POSTs the one-click body
        page = ("<!doctype html><meta charset=utf-8><title>Unsubscribe</title>"
                "<form method=post><input type=hidden name=List-Unsubscribe value=One-Click>"
                "<p>Stop receiving these e-mails? / 수신을 거부하시겠습니까?</p>"
                "<button type=submit>Unsubscribe / 수신거부</button></form>")
        await _respond(send, 200, page.encode(), [(b"content-type", b"text/html; charset=utf-8"),
                                                  (b"cache-control", b"no-store")])
        return
    if method != "POST":
        await _text(send, 405, "use POST", allow="GET, POST")
        return
    body = await _body(receive, 16384)
    if _form(_header(scope, b"content-type"), body).get("List-Unsubscribe") != ["One-Click"]:
        await _text(send, 400, "a one-click unsubscribe POSTs the body List-Unsubscribe=One-Click (RFC 8058)")
        return
    done = await call(shop.record_unsubscribe, token, at=now())
    if not done:
        await _text(send, 404, "this unsubscribe link is not valid")
        return
    page = "<!doctype html><meta charset=utf-8><title>Unsubscribed</title><p>" + escape(
        "You will not receive these e-mails any more. / 수신거부가 처리되었습니다.") + "</p>"
    await _respond(send, 200, page.encode(), [(b"content-type", b"text/html; charset=utf-8")])


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if bytes(key).lower() == name:
            return bytes(value).decode("latin-1")
    return ""


def _form(content_type: str, body: bytes) -> dict[str, list[str]]:
    """A form body's fields: RFC 8058 senders SHOULD use ``multipart/form-data`` and MAY use
    ``application/x-www-form-urlencoded``; both are read."""
    if content_type.lower().startswith("multipart/form-data"):
        mail = email.message_from_bytes(b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body,
                                        policy=email.policy.HTTP)
        fields: dict[str, list[str]] = {}
        for part in mail.iter_parts() if mail.is_multipart() else ():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            if isinstance(name, str) and isinstance(payload, bytes):
                fields.setdefault(name, []).append(payload.decode("utf-8", "replace").strip())
        return fields
    return parse_qs(body.decode("utf-8", "replace"))


async def _solapi(receive: Receive, send: Send, call: Callable[..., Awaitable[Any]], shop: Shop) -> None:
    from shopcrm.channels.solapi import SolapiChannel

    body = await _body(receive, MAX_BODY)
    try:
        payload = json.loads(body)
    except ValueError:
        await _text(send, 400, "the body is not JSON")
        return
    reports = SolapiChannel.delivery_reports(payload)
    changed = await call(shop.record_deliveries, reports) if reports else {}
    await _respond(send, 200, json.dumps({"reports": len(reports), "changed": changed}).encode(),
                   [(b"content-type", b"application/json")])


async def _body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = bytes(message.get("body", b""))
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _text(send: Send, status: int, text: str, *, allow: str | None = None) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8")]
    if allow:
        headers.append((b"allow", allow.encode()))
    await _respond(send, status, text.encode(), headers)


async def _respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
