"""Every built-in channel passes the conformance kit plugin authors use (shopcrm.testing)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from engines.servers import free_port
from loopback import webhook_receiver
from shopcrm.channels import (
    Accepted,
    Ambiguous,
    Channel,
    ConsoleChannel,
    JsonlChannel,
    Message,
    Rejected,
    SendResult,
    SmtpChannel,
    SolapiChannel,
    Transient,
    WebhookChannel,
)
from shopcrm.testing import ChannelContract
from solapi_server import KEY, PF_ID, SECRET, solapi_server


class TestConsole(ChannelContract):
    def make_channel(self) -> Channel:
        return ConsoleChannel(write=lambda line: None)

    def sample_messages(self) -> Sequence[Message]:
        return [self.message(), self.message(kind="email", to="a@example.com", subject="s")]


class TestJsonl(ChannelContract):
    @pytest.fixture(autouse=True)
    def _folder(self, tmp_path: Path) -> None:
        self.path = tmp_path / "out.jsonl"

    def make_channel(self) -> Channel:
        return JsonlChannel(self.path)

    def sample_messages(self) -> Sequence[Message]:
        return [self.message()]


class TestWebhook(ChannelContract):
    @pytest.fixture(autouse=True)
    def _receiver(self) -> Iterator[None]:
        with webhook_receiver() as receiver:
            self.url = receiver.url
            yield

    def make_channel(self) -> Channel:
        return WebhookChannel(self.url, secret="s3cret")

    def sample_messages(self) -> Sequence[Message]:
        return [self.message(kind="webhook", channel="webhook", to="webhook")]


class TestSmtp(ChannelContract):
    @pytest.fixture(autouse=True)
    def _server(self) -> Iterator[None]:
        class Sink:
            async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
                return "250 OK"

        self.port = free_port()
        controller = Controller(Sink(), hostname="127.0.0.1", port=self.port)
        controller.start()
        yield
        controller.stop()

    def make_channel(self) -> Channel:
        return SmtpChannel("127.0.0.1", self.port, sender="s@shop.example")

    def sample_messages(self) -> Sequence[Message]:
        return [self.message(kind="email", channel="email", to="a@example.com", subject="hello")]


class TestSolapi(ChannelContract):
    @pytest.fixture(autouse=True)
    def _server(self) -> Iterator[None]:
        with solapi_server() as server:
            self.url = server.url
            yield

    def make_channel(self) -> Channel:
        return SolapiChannel(api_key=KEY, api_secret=SECRET, sender="0215880000", pf_id=PF_ID, base_url=self.url)

    def sample_messages(self) -> Sequence[Message]:
        return [self.message(to="010-1234-5678"), self.message(kind="brand_message", channel="brand_message", to="010-1234-5679")]


# -- the kit itself: it passes a channel that answers Ambiguous and prepares batches, and catches the faults
# the dispatcher cannot survive ----------------------------------------------------------------------------


class Fake(Channel):
    """Takes even-numbered messages, answers Ambiguous for the others; ``begin`` hands out group ids."""

    name = "fake"
    kinds = frozenset({"sms"})

    def __init__(self) -> None:
        self.taken: set[str] = set()
        self.groups = 0

    async def begin(self, batch: Sequence[Message]) -> str:
        self.groups += 1
        return f"G{self.groups}"

    async def send(self, batch: Sequence[Message]) -> list[SendResult]:
        assert all(m.batch_ref == f"G{self.groups}" for m in batch), "send before begin, or without its reference"
        results: list[SendResult] = []
        for i, message in enumerate(batch):
            self.taken.add(message.key)
            results.append(Accepted(provider_id=message.key) if i % 2 == 0 else Ambiguous("answer lost"))
        return results

    async def reconcile(self, messages: Sequence[Message]) -> list[SendResult | None]:
        return [Accepted(provider_id=m.key) if m.key in self.taken else Transient("not taken") for m in messages]


class TestAmbiguousAndPreparing(ChannelContract):
    def make_channel(self) -> Channel:
        return Fake()

    def sample_messages(self) -> Sequence[Message]:
        return [self.message(to="010-1234-5678")]


class BeginsWithoutReference(Fake):
    async def begin(self, batch: Sequence[Message]) -> str:
        self.groups += 1
        return None  # type: ignore[return-value]


class AnswersTrue(Fake):
    async def send(self, batch: Sequence[Message]) -> list[SendResult]:
        return [True] * len(batch)  # type: ignore[list-item]


class ForgetsWhatItTook(Fake):
    async def reconcile(self, messages: Sequence[Message]) -> list[SendResult | None]:
        return [Transient("no record") for _ in messages]


class RaisesOnLineBreaks(Fake):
    def validate(self, message: Message) -> list[str]:
        if "\n" in (message.subject or ""):
            raise ValueError("Header values may not contain linefeed or carriage return characters")
        return super().validate(message)


@pytest.mark.parametrize(("channel", "check", "says"), [
    (BeginsWithoutReference, "test_begin_returns_the_providers_reference", "begin must return"),
    (BeginsWithoutReference, "test_send_answers_each_message_in_order", "begin must return"),
    (AnswersTrue, "test_send_answers_each_message_in_order", "Accepted, Rejected, Transient or Ambiguous"),
    (ForgetsWhatItTook, "test_reconcile_never_calls_an_accepted_message_not_taken", "sent twice"),
    (RaisesOnLineBreaks, "test_validate_answers_whatever_the_text", "linefeed"),
])
def test_the_kit_fails_a_channel_the_dispatcher_could_not_trust(channel: type[Fake], check: str, says: str) -> None:
    class Contract(ChannelContract):
        def make_channel(self) -> Channel:
            return channel()

        def sample_messages(self) -> Sequence[Message]:
            return [self.message(to="010-1234-5678")]

    with pytest.raises((AssertionError, ValueError), match=says):
        getattr(Contract(), check)()


# -- the development channels under hostile text ---------------------------------------------------------


def test_jsonl_reconciles_texts_with_unicode_line_separators_and_rejects_unwritable_ones_alone(tmp_path: Path) -> None:
    channel = JsonlChannel(tmp_path / "out.jsonl")
    odd = [ChannelContract.message(key="k1", text="line\u2028separator\x85next"),
           ChannelContract.message(key="k2", text="\ud800 lone surrogate"),
           ChannelContract.message(key="k3", customer_id=float("nan"))]
    assert channel.validate(odd[0]) == []
    assert channel.validate(odd[1])
    results = asyncio.run(channel.send(odd))
    assert [type(r) for r in results] == [Accepted, Rejected, Rejected]
    # what the file says after a crash: k1 was written (saying otherwise would send it twice)
    assert asyncio.run(channel.reconcile(odd[:1])) == [Accepted(provider_id="k1")]


def test_jsonl_a_line_torn_by_a_crash_does_not_swallow_the_next_batch(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_text('{"key": "k0", "text": "torn', encoding="utf-8")
    channel = JsonlChannel(path)
    asyncio.run(channel.send([ChannelContract.message(key="k1")]))
    assert [m["key"] for m in channel.written()] == ["k1"]
    assert asyncio.run(channel.reconcile([ChannelContract.message(key="k1")])) == [Accepted(provider_id="k1")]


def test_console_prints_every_message_on_one_line_and_settles_a_failing_output() -> None:
    lines: list[str] = []
    batch = [ChannelContract.message(key="k1", text="a\r\nb\rc\nd"), ChannelContract.message(key="k2", text="\ud800")]
    results = asyncio.run(ConsoleChannel(write=lines.append).send(batch))
    assert results == [Accepted(provider_id="k1"), Accepted(provider_id="k2")]
    assert all("\n" not in line and "\r" not in line for line in lines)
    assert lines[0].endswith("a / b / c / d")
    lines[1].encode("utf-8")  # printable

    def broken(line: str) -> None:
        raise BrokenPipeError("the reader went away")

    results = asyncio.run(ConsoleChannel(write=broken).send(batch))
    assert [type(r) for r in results] == [Ambiguous, Transient]
