"""Every built-in channel passes the conformance kit plugin authors use (shopcrm.testing)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from engines.servers import free_port
from loopback import webhook_receiver
from shopcrm.channels import (
    Channel,
    ConsoleChannel,
    JsonlChannel,
    Message,
    SmtpChannel,
    SolapiChannel,
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
