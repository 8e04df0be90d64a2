"""A conformance kit for channel plugins: subclass :class:`ChannelContract` in your tests and pytest runs it.

::

    from shopcrm.testing import ChannelContract

    class TestMyChannel(ChannelContract):
        def make_channel(self):
            return MyChannel(token="test", transport=httpx.MockTransport(my_fake_api))

        def sample_messages(self):
            return [self.message(kind="sms", to="010-1234-5678", text="안녕하세요")]

The contract checks what the dispatcher relies on: a name and the kinds it carries; ``validate``
answers with problems (a message without a recipient has one, a sample has none); ``send`` returns
one :class:`~shopcrm.channels.SendResult` per message, in order, for batches up to ``batch_size``
(an empty batch included); ``reconcile`` answers per message; ``aclose`` closes it.  It imports pytest only when run.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

from shopcrm.channels import KINDS, Accepted, Channel, Message, Rejected, Transient

__all__ = ["ChannelContract"]


class ChannelContract:
    """The behaviour every channel owes the dispatcher.  Override :meth:`make_channel` and
    :meth:`sample_messages`; every ``test_*`` method is a pytest test."""

    def make_channel(self) -> Channel:
        raise NotImplementedError("return a configured channel (with a fake transport or a loopback server)")

    def sample_messages(self) -> Sequence[Message]:
        raise NotImplementedError("return a few messages this channel can carry")

    @staticmethod
    def message(**fields: Any) -> Message:
        """A message with a fresh key and sensible defaults for what you do not give."""
        values: dict[str, Any] = {"key": uuid.uuid4().hex, "customer_id": "c1", "channel": fields.get("channel", fields.get("kind", "sms")),
                                  "kind": "sms", "to": "010-0000-0000", "text": "shopcrm conformance"}
        values.update(fields)
        return Message(**values)

    def _run(self, coroutine: Any) -> Any:
        return asyncio.run(coroutine)

    def test_it_names_itself_and_what_it_carries(self) -> None:
        channel = self.make_channel()
        assert isinstance(channel, Channel), "a channel subclasses shopcrm.channels.Channel"
        assert channel.name, "set the class attribute name"
        assert channel.kinds, "set the class attribute kinds"
        assert set(channel.kinds) <= KINDS, f"kinds {sorted(set(channel.kinds) - KINDS)} are not shopcrm kinds ({sorted(KINDS)})"
        assert channel.batch_size >= 1
        assert channel.rate_per_second is None or channel.rate_per_second > 0

    def test_the_samples_are_valid_and_a_message_without_recipient_is_not(self) -> None:
        channel = self.make_channel()
        samples = list(self.sample_messages())
        assert samples, "sample_messages must give at least one message"
        for sample in samples:
            problems = channel.validate(sample)
            assert isinstance(problems, list)
            assert problems == [], f"validate refused a sample message: {problems}"
        problems = channel.validate(self.message(kind=samples[0].kind, channel=samples[0].channel, to=""))
        assert problems, "a message without a recipient must have a problem"
        assert all(isinstance(p, str) and p for p in problems)

    def test_send_answers_each_message_in_order(self) -> None:
        channel = self.make_channel()
        samples = list(self.sample_messages())
        batch = (samples * (1 + min(channel.batch_size, 5) // len(samples)))[: max(1, min(channel.batch_size, 5))]
        batch = [Message(**{**m.as_dict(), "key": uuid.uuid4().hex}) for m in batch]

        async def go() -> Any:
            try:
                return await channel.send([]), await channel.send(batch)
            finally:
                await channel.aclose()

        empty, results = self._run(go())
        assert list(empty) == [], "an empty batch answers an empty list"
        assert len(results) == len(batch), f"send answered {len(results)} results for {len(batch)} messages"
        assert all(isinstance(r, Accepted | Rejected | Transient) for r in results)
        assert any(isinstance(r, Accepted) for r in results), "no sample message was accepted"

    def test_reconcile_answers_each_message(self) -> None:
        channel = self.make_channel()
        samples = list(self.sample_messages())

        async def go() -> Any:
            try:
                return await channel.reconcile(samples)
            finally:
                await channel.aclose()

        answers = self._run(go())
        assert len(answers) == len(samples)
        assert all(a is None or isinstance(a, Accepted | Rejected | Transient) for a in answers)
