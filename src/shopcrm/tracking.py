"""Tracked links and one-click unsubscribe links: signed, compact tokens. Pure (no I/O).

A campaign template writes ``{{ link("https://shop.example/p/123") }}``; the rendered message carries
``<base_url>/<token>`` instead, and the shop keeps the target URL in the rendered message (the outbox).
The token names the message and the link, and nothing else:

- a header byte (``0``: the message key is the planner's 32 hex digits, packed into 16 bytes; ``1``-``255``:
  the key's length in UTF-8 bytes, the key follows as is);
- the message key;
- for a click, the link id: the first 4 bytes of SHA-256 of the target URL (the shop looks the URL up among
  the links of that message, so a token can only ever lead where the message itself pointed);
- the first 16 bytes (128 bits) of HMAC-SHA256 over a purpose label (``click`` or ``unsubscribe``: a click
  token is never an unsubscribe token) and everything above, keyed with :attr:`TrackingPolicy.secret`.

All of it in base64url without padding: 50 characters for a click, 44 for an unsubscribe link.  Checking
uses :func:`hmac.compare_digest`.  A token that is truncated, extended, altered in one bit, or signed with
another secret is refused (:func:`read_token` returns None).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Any, Literal

import attrs

__all__ = ["TrackingPolicy", "TrackedToken", "link_id", "make_token", "read_token"]

_MAC_BYTES = 16
_LINK_BYTES = 4
_HEX_KEY = re.compile(r"[0-9a-f]{32}")
_TOKEN = re.compile(r"[A-Za-z0-9_-]{20,400}")
Purpose = Literal["click", "unsubscribe"]


def _check_base(_: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if value and not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", value):
        raise ValueError(
            f"TrackingPolicy.{attribute.name} {value!r} is not an http(s) URL without query or fragment; "
            "write e.g. 'https://shop.example/r'"
        )


def _check_secret(_: object, __: object, value: str) -> None:
    if len(value.encode()) < 16:
        raise ValueError(
            "TrackingPolicy.secret must be at least 16 bytes of randomness (e.g. secrets.token_urlsafe(32)); "
            f"got {len(value.encode())} bytes"
        )


def _strip(value: str) -> str:
    return value.rstrip("/")


@attrs.frozen(kw_only=True)
class TrackingPolicy:
    """Where tracked links and one-click unsubscribe links point, and the secret that signs their tokens.

    ``base_url`` is where :func:`shopcrm.web.create_app`'s ``/r`` route is reachable (``https://shop.example/r``
    when the app is mounted at the site's root); ``unsubscribe_url`` where its ``/u`` route is (empty: e-mails
    keep :attr:`MessagingPolicy.unsubscribe_url <shopcrm.campaigns.MessagingPolicy.unsubscribe_url>`).  The
    secret never appears in a repr; it is saved with the shop's messaging policy, so keep that table private.
    """

    base_url: str = attrs.field(converter=_strip, validator=_check_base)
    secret: str = attrs.field(repr=False, validator=_check_secret)
    unsubscribe_url: str = attrs.field(default="", converter=_strip, validator=_check_base)

    def link(self, message_key: str, url: str) -> str:
        """The tracked form of ``url`` in the message ``message_key``."""
        return f"{self.base_url}/{make_token(self.secret, 'click', message_key, url)}"

    def unsubscribe(self, message_key: str) -> str:
        """The one-click unsubscribe URL of the message ``message_key`` (needs ``unsubscribe_url``)."""
        if not self.unsubscribe_url:
            raise ValueError("TrackingPolicy.unsubscribe_url is not set")
        return f"{self.unsubscribe_url}/{make_token(self.secret, 'unsubscribe', message_key)}"

    def read(self, token: str, purpose: Purpose = "click") -> TrackedToken | None:
        """:func:`read_token` with this policy's secret."""
        return read_token(self.secret, token, purpose)

    def to_dict(self) -> dict[str, str]:
        return {"base_url": self.base_url, "secret": self.secret, "unsubscribe_url": self.unsubscribe_url}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrackingPolicy:
        known = {"base_url", "secret", "unsubscribe_url"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"a tracking policy has no field {', '.join(map(repr, unknown))}; its fields are "
                             f"{', '.join(sorted(known))}")
        return cls(**{k: str(v) for k, v in data.items()})


@attrs.frozen
class TrackedToken:
    """What a valid token names: the message key, and for a click the link id (:func:`link_id` of the URL)."""

    message_key: str
    link: bytes | None = None


def link_id(url: str) -> bytes:
    """The 4-byte id of a link target inside its message (the first bytes of its SHA-256)."""
    return hashlib.sha256(url.encode()).digest()[:_LINK_BYTES]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _mac(secret: str, purpose: Purpose, payload: bytes) -> bytes:
    return hmac.digest(secret.encode(), purpose.encode() + b"\x00" + payload, "sha256")[:_MAC_BYTES]


def _key_bytes(message_key: str) -> bytes:
    if _HEX_KEY.fullmatch(message_key):
        return b"\x00" + bytes.fromhex(message_key)
    raw = message_key.encode()
    if not 0 < len(raw) < 256:
        raise ValueError(f"a message key must be 1 to 255 bytes long; got {len(raw)}")
    return bytes([len(raw)]) + raw


def make_token(secret: str, purpose: Purpose, message_key: str, url: str | None = None) -> str:
    """A signed token for a click on ``url`` in ``message_key`` (``purpose="click"``) or for unsubscribing
    through it (``"unsubscribe"``, no URL)."""
    payload = _key_bytes(message_key)
    if purpose == "click":
        if url is None:
            raise ValueError("a click token needs the link's URL")
        payload += link_id(url)
    return _b64(payload + _mac(secret, purpose, payload))


def read_token(secret: str, token: str, purpose: Purpose = "click") -> TrackedToken | None:
    """The message (and link id) a token names, or None when it is not one this secret signed for ``purpose``."""
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return None
    if _b64(raw) != token:  # one canonical spelling only (no stray bits in the last character)
        return None
    extra = _LINK_BYTES if purpose == "click" else 0
    if len(raw) < 1 + _MAC_BYTES + extra:
        return None
    header = raw[0]
    size = 16 if header == 0 else header
    if len(raw) != 1 + size + extra + _MAC_BYTES:
        return None
    payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
    if not hmac.compare_digest(mac, _mac(secret, purpose, payload)):
        return None
    body = payload[1:1 + size]
    if header == 0:
        key = body.hex()
    else:
        try:
            key = body.decode()
        except UnicodeDecodeError:
            return None
    return TrackedToken(key, payload[1 + size:] if extra else None)
