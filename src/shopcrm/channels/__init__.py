"""Channels: providers that carry rendered messages (the dispatcher drives them).

Built in: ``console`` and ``jsonl`` for development, ``webhook`` (HMAC-signed JSON over HTTP), ``smtp``, and
``solapi`` (SMS, LMS, MMS, AlimTalk and Brand Message through Solapi's HTTP API), ``nhncloud`` (SMS, LMS and MMS
through NHN Cloud's SMS API v3.0) and ``nhncloud_kakao`` (AlimTalk and text Brand Messages through NHN Cloud's
KakaoTalk Bizmessage API).  More
arrive as plugins under the entry-point group ``shopcrm.channels``.
"""

from shopcrm.channels._base import (
    KINDS,
    Accepted,
    Ambiguous,
    Channel,
    DeliveryReport,
    Message,
    Rejected,
    SendResult,
    Transient,
)
from shopcrm.channels.console import ConsoleChannel
from shopcrm.channels.jsonl import JsonlChannel
from shopcrm.channels.nhncloud import NhnCloudSmsChannel
from shopcrm.channels.nhncloud_kakao import NhnCloudKakaoChannel
from shopcrm.channels.smtp import SmtpChannel
from shopcrm.channels.solapi import SolapiChannel
from shopcrm.channels.webhook import WebhookChannel

__all__ = [
    "KINDS",
    "Accepted",
    "Ambiguous",
    "Channel",
    "ConsoleChannel",
    "DeliveryReport",
    "JsonlChannel",
    "Message",
    "NhnCloudKakaoChannel",
    "NhnCloudSmsChannel",
    "Rejected",
    "SendResult",
    "SmtpChannel",
    "SolapiChannel",
    "Transient",
    "WebhookChannel",
]
