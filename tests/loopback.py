"""A real HTTP server on loopback that receives webhook messages, checks their signatures and misbehaves
on request: 5xx bursts, 429 with Retry-After, slow answers (client timeouts), dropped connections (before
processing, or after: the request taken and its answer never sent), a proxy's 5xx after processing,
rejections of chosen numbers.  It records every request it received, duplicates included."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import attrs

from shopcrm.channels.webhook import verify_signature


@attrs.define
class Behaviour:
    """What the server does; every field may be changed while it runs."""

    secret: str | Sequence[str] = "s3cret"  # several: any of them verifies (secret rotation)
    fail_first: int = 0  # the first N requests answer 503
    retry_after: float | None = None  # with fail_first: 429 and this Retry-After instead of 503
    slow_first: int = 0  # the first N requests are processed, then answered after `slow_seconds`
    slow_seconds: float = 0.0
    drop_first: int = 0  # the first N requests are read, then the connection is closed without an answer
    drop_after_first: int = 0  # the first N requests are processed, then the connection is closed without an answer
    error_after_first: int = 0  # the first N requests are processed, then answered `error_status` (a proxy's 5xx)
    error_status: int = 502
    reject_to: set[str] = attrs.field(factory=set)  # 400 for these recipients
    deduplicate: bool = True  # a repeated Idempotency-Key answers 200 without a new delivery


@attrs.define
class Receiver:
    behaviour: Behaviour
    url: str = ""
    requests: list[dict[str, Any]] = attrs.field(factory=list)  # every request, in order
    delivered: dict[str, dict[str, Any]] = attrs.field(factory=dict)  # by key: what was taken
    bad_signatures: int = 0
    lock: threading.Lock = attrs.field(factory=threading.Lock)

    def deliveries(self) -> list[str]:
        """The keys of every request that was processed as a delivery (a duplicate appears twice)."""
        return [r["key"] for r in self.requests if r["processed"]]


class JSONHandler(BaseHTTPRequestHandler):
    """A quiet handler that answers JSON (the loopback servers' common part)."""

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _fault(self, count: int, drop_first: int, fail_first: int, retry_after: float | None) -> bool:
        """Misbehave as asked for request number ``count``: drop the connection, or answer 429 (with
        Retry-After) or 503; whether it did (the caller then stops)."""
        if count < drop_first:
            self.close_connection = True
            self.connection.close()
            return True
        if count < fail_first:
            if retry_after is not None:
                self._answer(429, {"error": "slow down", "errorCode": "TooManyRequests"}, {"Retry-After": f"{retry_after:g}"})
            else:
                self._answer(503, {"error": "unavailable", "errorCode": "ServiceUnavailable"})
            return True
        return False

    def _answer(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


@contextmanager
def serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve ``handler`` on a free loopback port for the block; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(JSONHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            b = receiver.behaviour
            with receiver.lock:
                count = len(receiver.requests)
                payload = json.loads(body)
                key = self.headers.get("Idempotency-Key", "")
                signed = verify_signature(b.secret, body, self.headers.get("X-Shopcrm-Signature", ""), now=time.time())
                seen = key in receiver.delivered
                record = {"key": key, "to": payload.get("to"), "payload": payload, "processed": False}
                receiver.requests.append(record)
            if not signed:
                receiver.bad_signatures += 1
                return self._answer(401, {"error": "bad signature"})
            if self._fault(count, b.drop_first, b.fail_first, b.retry_after):
                return None
            if payload.get("to") in b.reject_to:
                return self._answer(400, {"error": "invalid number"})
            if seen and b.deduplicate:
                return self._answer(200, {"id": receiver.delivered[key]["id"], "duplicate": True})
            with receiver.lock:
                record["processed"] = True
                receiver.delivered[key] = {"id": f"msg-{len(receiver.delivered) + 1}", "payload": payload}
                answer = {"id": receiver.delivered[key]["id"]}
            if count < b.drop_after_first:  # taken; the answer never leaves
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return None
            if count < b.error_after_first:
                return self._answer(b.error_status, {"error": "bad gateway"})
            if count < b.slow_first:
                time.sleep(b.slow_seconds)
            return self._answer(200, answer)


    return Handler


@contextmanager
def webhook_receiver(behaviour: Behaviour | None = None) -> Iterator[Receiver]:
    """A receiver on a free loopback port for the duration of the block."""
    receiver = Receiver(behaviour or Behaviour())
    with serve(_handler(receiver)) as url:
        receiver.url = f"{url}/hooks/shopcrm"
        yield receiver
