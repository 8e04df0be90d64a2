"""The plugin's tests: shopcrm's conformance kit against a fake PushGate (httpx.MockTransport)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

import httpx
from shopcrm_pushgate import PushGateChannel

from shopcrm.channels import Channel, Message, Rejected
from shopcrm.testing import ChannelContract


def fake_gateway(request: httpx.Request) -> httpx.Response:
    if request.headers.get("Authorization") != "Bearer test-token":
        return httpx.Response(401, text="unauthorised")
    answers = [{"id": n["id"], "status": "invalid_token" if n["token"] == "gone" else "queued"}
               for n in json.loads(request.content)]
    return httpx.Response(200, json=answers)


def make() -> PushGateChannel:
    return PushGateChannel("https://push.example", token="test-token", transport=httpx.MockTransport(fake_gateway))


class TestPushGate(ChannelContract):
    def make_channel(self) -> Channel:
        return make()

    def sample_messages(self) -> Sequence[Message]:
        return [self.message(kind="push", channel="push", to="device-1", subject="세일", text="겨울 세일이 시작됐어요")]


def test_a_gone_device_is_rejected_for_good() -> None:
    message = ChannelContract.message(kind="push", channel="push", to="gone", text="hi")
    [result] = asyncio.run(make().send([message]))
    assert isinstance(result, Rejected)
    assert result.code == "invalid_token"
