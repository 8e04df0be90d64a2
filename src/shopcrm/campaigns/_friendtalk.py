"""Kakao FriendTalk ended on 2025-12-31 and Brand Message (브랜드 메시지) replaced it: wherever a channel is named
(a campaign's chain, a dispatcher's channels, a frequency cap, the quiet hours' exemptions), ``friendtalk`` is
read as ``brand_message``, with a warning that says so."""

from __future__ import annotations

import warnings
from collections.abc import Iterable

__all__ = ["brand_message_for", "brand_messages_for"]


def brand_message_for(channel: str, where: str, *, stacklevel: int = 3) -> str:
    """``channel``, or ``brand_message`` (with a :class:`DeprecationWarning` naming ``where``) for ``friendtalk``."""
    if channel != "friendtalk":
        return channel
    warnings.warn(
        f"Kakao FriendTalk ended on 2025-12-31; 'friendtalk' in {where} is read as 'brand_message' (브랜드 메시지), "
        "its replacement. Write 'brand_message' to silence this warning.",
        DeprecationWarning,
        stacklevel=stacklevel,
    )
    return "brand_message"


def brand_messages_for(channels: Iterable[str], where: str, *, stacklevel: int = 4) -> list[str]:
    """Each of ``channels`` through :func:`brand_message_for` (one warning for the lot)."""
    named = list(channels)
    if "friendtalk" not in named:
        return named
    brand_message_for("friendtalk", where, stacklevel=stacklevel)
    return ["brand_message" if c == "friendtalk" else c for c in named]
