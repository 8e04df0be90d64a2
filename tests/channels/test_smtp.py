"""E-mail through a real SMTP server on loopback (aiosmtpd): headers, refusals, temporary failures, mails that
cannot be built in the middle of a batch, and a server that takes a mail and drops the connection."""

from __future__ import annotations

import asyncio
import email.policy
from collections.abc import Iterator
from email import message_from_bytes
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from hypothesis import given, settings
from hypothesis import strategies as st

from engines.servers import free_port
from shopcrm.channels import Accepted, Ambiguous, Message, Rejected, SmtpChannel, Transient


class Mailbox:
    """Takes every mail, but: ``nobody@`` is refused (550); an address in ``temporary`` is refused once (451);
    at ``drop_at_rcpt`` the connection is closed before the mail's data; at ``drop_after_data`` the mail is
    taken and the connection closed without an answer."""

    def __init__(self) -> None:
        self.mails: list[Any] = []
        self.raw: list[bytes] = []  # each mail as it came over the wire
        self.temporary: set[str] = set()
        self.drop_at_rcpt: set[str] = set()
        self.drop_after_data: set[str] = set()
        self.refuse_data: dict[str, str] = {}

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address.startswith("nobody@"):
            return "550 5.1.1 no such user"
        if address in self.temporary:
            self.temporary.discard(address)
            return "451 4.3.0 try again later"
        if address in self.drop_at_rcpt:
            server.transport.abort()
            return "250 OK"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        [to] = envelope.rcpt_tos
        if to in self.refuse_data:
            return self.refuse_data[to]
        self.mails.append(message_from_bytes(envelope.content))
        self.raw.append(envelope.content)
        if to in self.drop_after_data:
            server.transport.abort()  # the mail is taken; its answer never leaves
        return "250 Message accepted"

    def recipients(self) -> list[str]:
        return [str(m["To"]) for m in self.mails]


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


def test_a_long_unsubscribe_url_arrives_whole_on_one_line(mailbox: tuple[Mailbox, int]) -> None:
    """Folded at 78 characters, a URL of 76 or more became RFC 2047 encoded-words, and no mail client could find
    the one-click unsubscribe link (RFC 8058) in them: the header goes on one line as it is."""
    box, port = mailbox
    url = "https://www.example-shop.co.kr/crm/u/" + "AAEjRWeJq83vASNFZ4mrze883bYauzsxDwKgSGHYB0P5" * 3
    channel = SmtpChannel("127.0.0.1", port, sender="sale@shop.example", sender_name="마음상점")
    long_subject = "(광고) " + "아주 긴 겨울 세일 제목 " * 8
    [result] = asyncio.run(channel.send([mail("k1", "a@example.com", subject=long_subject, headers=(
        ("List-Unsubscribe", f"<{url}>"), ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")))]))
    assert isinstance(result, Accepted)
    [received] = box.mails
    assert received["List-Unsubscribe"] == f"<{url}>"
    raw = box.raw[0].decode("ascii")
    assert f"List-Unsubscribe: <{url}>\r\n" in raw
    assert "=?" not in raw.split("List-Unsubscribe: ", 1)[1].split("\r\n", 1)[0]
    # the other headers are still folded, and encoded where they are not ASCII (RFC 2047 words of at most 75)
    assert str(message_from_bytes(box.raw[0], policy=email.policy.default)["Subject"]) == long_subject
    assert max(len(line) for line in raw.split("\r\n") if not line.startswith("List-Unsubscribe:")) <= 78


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


def channel(port: int) -> SmtpChannel:
    return SmtpChannel("127.0.0.1", port, sender="sale@shop.example", sender_name="마음상점", timeout=10)


def test_a_line_break_in_one_mail_rejects_that_mail_alone_and_the_batch_goes_on(mailbox: tuple[Mailbox, int]) -> None:
    box, port = mailbox
    smtp = channel(port)
    batch = [
        mail("k1", "a@example.com"),
        mail("k2", "b@example.com", subject="(광고) 김민서\r\nBcc: everyone@example.com님 세일"),
        mail("k3", "c@example.com\r\nRCPT TO:<evil@example.com>"),
        mail("k4", "d@example.com", headers=(("List-Unsubscribe", "<https://shop.example/u/c1>\nX-Evil: 1"),)),
        mail("k5", "e@example.com, f@example.com"),
        mail("k6", "g@example.com"),
    ]
    for bad in batch[1:5]:
        assert smtp.validate(bad), bad
    results = asyncio.run(smtp.send(batch))
    assert [type(r) for r in results] == [Accepted, Rejected, Rejected, Rejected, Rejected, Accepted]
    assert all(r.code == "invalid" for r in results[1:5] if isinstance(r, Rejected))
    assert box.recipients() == ["a@example.com", "g@example.com"]
    assert not any(m["Bcc"] or m["X-Evil"] for m in box.mails)


def test_a_batch_cut_after_the_server_took_a_mail_is_settled_per_mail(mailbox: tuple[Mailbox, int]) -> None:
    box, port = mailbox
    box.drop_after_data.add("b@example.com")
    results = asyncio.run(channel(port).send([mail(f"k{i}", f"{c}@example.com") for i, c in enumerate("abcd")]))
    assert [type(r) for r in results] == [Accepted, Ambiguous, Transient, Transient]
    assert box.recipients() == ["a@example.com", "b@example.com"]  # b was taken: resending it would be a duplicate


def test_a_connection_lost_before_the_data_leaves_that_mail_transient(mailbox: tuple[Mailbox, int]) -> None:
    box, port = mailbox
    box.drop_at_rcpt.add("b@example.com")
    results = asyncio.run(channel(port).send([mail(f"k{i}", f"{c}@example.com") for i, c in enumerate("abc")]))
    assert [type(r) for r in results] == [Accepted, Transient, Transient]
    assert box.recipients() == ["a@example.com"]


def test_refusals_before_and_after_the_data_are_per_mail_and_the_session_goes_on(mailbox: tuple[Mailbox, int]) -> None:
    box, port = mailbox
    box.temporary.add("later@example.com")
    box.refuse_data = {"full@example.com": "452 4.3.1 mailbox full", "spam@example.com": "554 5.7.1 looks like spam"}
    to = ["a@example.com", "nobody@example.com", "later@example.com", "full@example.com", "spam@example.com", "b@example.com"]
    results = asyncio.run(channel(port).send([mail(f"k{i}", address) for i, address in enumerate(to)]))
    assert [(type(r), getattr(r, "code", "")) for r in results] == [
        (Accepted, ""), (Rejected, "550"), (Transient, "451"), (Transient, "452"), (Rejected, "554"), (Accepted, ""),
    ]
    assert box.recipients() == ["a@example.com", "b@example.com"]


def test_an_unsubscribe_url_that_was_not_url_encoded_is_refused() -> None:
    smtp = SmtpChannel("127.0.0.1", 25, sender="s@shop.example")
    raw = mail("k1", "a@example.com", headers=(("List-Unsubscribe", "<https://shop.example/u/김 민서>"),))
    quoted = mail("k2", "a@example.com", headers=(("List-Unsubscribe", "<https://shop.example/u/%EA%B9%80%20%EB%AF%BC%EC%84%9C>"),))
    assert any("URL-encoded" in p for p in smtp.validate(raw))
    assert smtp.validate(quoted) == []


@settings(max_examples=300, deadline=None)
@given(subject=st.text(min_size=1), name=st.text(), value=st.text(), local=st.text(min_size=1), text=st.text())
def test_whatever_the_text_validate_answers_and_an_accepted_mail_carries_exactly_its_headers(
        subject: str, name: str, value: str, local: str, text: str) -> None:
    smtp = SmtpChannel("127.0.0.1", 25, sender="s@shop.example")
    message = mail("k1", f"{local}@example.com", subject=subject, text=text, html=None,
                   headers=((name or "X-Name", value),))
    problems = smtp.validate(message)
    assert isinstance(problems, list)
    assert all(isinstance(p, str) for p in problems)
    if problems:
        return
    data = smtp.email(message).as_bytes()
    parsed = message_from_bytes(data, policy=email.policy.SMTP)
    expected = {"from", "to", "subject", "message-id", (name or "X-Name").lower(), "mime-version", "content-type",
                "content-transfer-encoding"}
    assert {k.lower() for k in parsed} <= expected
    assert len(parsed.get_all("To") or ()) == 1
    assert str(parsed["To"]) == f"{local}@example.com"
    assert data.isascii()


@st.composite
def batches(draw: st.DrawFn) -> tuple[list[Message], Mailbox]:
    """Mails to distinct addresses, some unbuildable, and a mailbox with faults at chosen recipients."""
    n = draw(st.integers(1, 8))
    box = Mailbox()
    messages = []
    for i in range(n):
        to = f"u{i}@example.com"
        subject = draw(st.sampled_from(["세일", "line\nbreak", "ok\r\nBcc: x@example.com", "(광고) 겨울"]))
        fault = draw(st.sampled_from(["none", "none", "drop_after", "drop_before", "451", "550", "452 data", "554 data"]))
        if fault == "drop_after":
            box.drop_after_data.add(to)
        elif fault == "drop_before":
            box.drop_at_rcpt.add(to)
        elif fault == "451":
            box.temporary.add(to)
        elif fault == "550":
            to = f"nobody{i}@example.com"
        elif fault.endswith("data"):
            box.refuse_data[to] = f"{fault.split()[0]} refused"
        messages.append(mail(f"k{i}", to, subject=subject))
    return messages, box


@settings(max_examples=40, deadline=None)
@given(case=batches())
def test_transient_means_not_in_the_mailbox_and_accepted_means_in_it(case: tuple[list[Message], Mailbox]) -> None:
    messages, box = case
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        results = asyncio.run(channel(port).send(messages))
    finally:
        controller.stop()
    taken = {str(m["Message-ID"]) for m in box.mails}
    assert len(results) == len(messages)
    for message, result in zip(messages, results, strict=True):
        mid = f"<{message.key}@shopcrm.local>"
        if isinstance(result, Accepted):
            assert mid in taken
        elif isinstance(result, Transient | Rejected):
            assert mid not in taken, (message.to, result)
    assert sum(isinstance(r, Ambiguous) for r in results) <= 1


def test_a_refused_starttls_never_falls_back_to_clear_text() -> None:
    """smtplib carries on unencrypted when STARTTLS is answered 454; the channel must stop there."""
    import socketserver
    import threading

    heard: list[bytes] = []

    class Server(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            self.wfile.write(b"220 fake ESMTP\r\n")
            for line in self.rfile:
                heard.append(line)
                verb = line[:4].upper()
                if verb == b"EHLO":
                    self.wfile.write(b"250-fake\r\n250 STARTTLS\r\n")
                elif verb == b"STAR":
                    self.wfile.write(b"454 4.7.0 TLS not available\r\n")
                elif verb == b"QUIT":
                    self.wfile.write(b"221 bye\r\n")
                    return
                else:
                    self.wfile.write(b"250 OK\r\n")

    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Server) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        smtp = SmtpChannel("127.0.0.1", server.server_address[1], sender="s@shop.example", starttls=True, timeout=5)
        [result] = asyncio.run(smtp.send([mail("k1", "a@example.com")]))
        server.shutdown()
    assert (type(result), getattr(result, "code", "")) == (Transient, "454")
    assert not any(line.upper().startswith((b"MAIL", b"RCPT", b"DATA", b"AUTH")) for line in heard)
