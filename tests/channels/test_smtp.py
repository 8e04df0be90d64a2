"""E-mail through a real SMTP server on loopback (aiosmtpd): headers, refusals, temporary failures."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from email import message_from_bytes
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from engines.servers import free_port
from shopcrm.channels import Accepted, Message, Rejected, SmtpChannel, Transient


class Mailbox:
    def __init__(self) -> None:
        self.mails: list[Any] = []
        self.temporary: set[str] = set()

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address.startswith("nobody@"):
            return "550 5.1.1 no such user"
        if address in self.temporary:
            self.temporary.discard(address)
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.mails.append(message_from_bytes(envelope.content))
        return "250 Message accepted"


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


def mail(key: str, to: str, **changes: Any) -> Message:
    fields: dict[str, Any] = {
        "key": key, "customer_id": "c1", "channel": "email", "kind": "email", "to": to, "purpose": "advertising",
        "subject": "(광고) 겨울 세일", "text": "김민서님, 겨울 세일이에요.", "html": "<p>김민서님, 겨울 세일이에요.</p>",
        "headers": (("List-Unsubscribe", "<https://shop.example/u/c1>"), ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")),
    }
    fields.update(changes)
    return Message(**fields)


def test_mails_arrive_with_their_unsubscribe_headers_and_key_message_ids(mailbox: tuple[Mailbox, int]) -> None:
    box, port = mailbox
    channel = SmtpChannel("127.0.0.1", port, sender="sale@shop.example", sender_name="마음상점")
    results = asyncio.run(channel.send([mail("k1", "a@example.com"), mail("k2", "nobody@example.com")]))
    assert isinstance(results[0], Accepted)
    assert results[0].provider_id == "<k1@shopcrm.local>"
    assert isinstance(results[1], Rejected)
    assert results[1].code == "550"
    [received] = box.mails
    assert received["List-Unsubscribe"] == "<https://shop.example/u/c1>"
    assert received["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert received["Message-ID"] == "<k1@shopcrm.local>"
    assert "겨울 세일" in str(received["Subject"]) or "=?utf-8?" in str(received["Subject"])
    parts = [part.get_content_type() for part in received.walk()]
    assert "text/plain" in parts
    assert "text/html" in parts


def test_a_temporary_refusal_and_an_unreachable_server_are_transient(mailbox: tuple[Mailbox, int]) -> None:
    box, port = mailbox
    box.temporary.add("later@example.com")
    [result] = asyncio.run(SmtpChannel("127.0.0.1", port, sender="s@shop.example").send([mail("k3", "later@example.com")]))
    assert isinstance(result, Transient)
    assert result.code == "451"
    [down] = asyncio.run(SmtpChannel("127.0.0.1", 1, sender="s@shop.example", timeout=2).send([mail("k4", "a@example.com")]))
    assert isinstance(down, Transient)
    assert down.code == "connection"


def test_validation_names_what_is_missing() -> None:
    channel = SmtpChannel("127.0.0.1", 25, sender="s@shop.example")
    assert channel.validate(mail("k5", "not-an-address", subject=None)) == [
        "an e-mail needs a subject", "'not-an-address' is not an e-mail address",
    ]
    with pytest.raises(ValueError, match="SHOPCRM_TEST_UNSET_VARIABLE"):
        SmtpChannel("127.0.0.1", 25, sender="s@shop.example", username="u", password_env="SHOPCRM_TEST_UNSET_VARIABLE")
