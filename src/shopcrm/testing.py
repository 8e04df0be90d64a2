"""A conformance kit for channel plugins: subclass :class:`ChannelContract` in your tests and pytest runs it.

::

    from shopcrm.testing import ChannelContract

    class TestMyChannel(ChannelContract):
        def make_channel(self):
            return MyChannel(token="test", transport=httpx.MockTransport(my_fake_api))

        def sample_messages(self):
            return [self.message(kind="sms", to="010-1234-5678", text="안녕하세요")]

The contract checks what the dispatcher relies on: a name and the kinds it carries; ``validate``
answers with problems (a message without a recipient has one, a sample has none) and never raises, whatever
the text (line breaks, NUL, lone surrogates, a NaN customer id); ``begin``, when the channel overrides it,
returns the provider's reference as a string, and the batch then goes out carrying it (``batch_ref``), as
the dispatcher sends it; ``send`` returns one :class:`~shopcrm.channels.SendResult` per message, in order,
for batches up to ``batch_size`` (an empty batch included), each one of
:class:`~shopcrm.channels.Accepted`, :class:`~shopcrm.channels.Rejected`,
:class:`~shopcrm.channels.Transient` or :class:`~shopcrm.channels.Ambiguous`; ``reconcile`` answers per
message with one of those or None, and never says "not taken" (Transient) of a message ``send`` said was
accepted (the dispatcher would send it again); ``aclose`` closes it.  It imports pytest only when run.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Sequence
from typing import Any

import attrs

from shopcrm.channels import KINDS, Accepted, Ambiguous, Channel, Message, Rejected, Transient

__all__ = ["ChannelContract"]

#: what ``send`` may answer per message
_RESULTS = (Accepted, Rejected, Transient, Ambiguous)


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

    def test_validate_answers_whatever_the_text(self) -> None:
        channel = self.make_channel()
        for sample in self.sample_messages():
            hostile = [
                attrs.evolve(sample, subject="line\r\nBcc: someone@example.com", text="a\x00b\r\n.\r\n"),
                attrs.evolve(sample, to=f"{sample.to}\r\nX-Injected: 1"),
                attrs.evolve(sample, text="\ud800 lone surrogate", subject="\udfff"),
                attrs.evolve(sample, customer_id=math.nan, variables=(("name", "\u2028\x85"),)),
                attrs.evolve(sample, text="가" * 100_000, headers=(("X-Name", "a\nb"), ("Bad Name:", "v"))),
            ]
            for message in hostile:
                problems = channel.validate(message)
                assert isinstance(problems, list), f"validate answered {problems!r}, not a list, for {message!r}"
                assert all(isinstance(p, str) and p for p in problems)

    async def _send(self, channel: Channel, batch: list[Message]) -> tuple[str, list[Message], Any]:
        """Send ``batch`` as the dispatcher does: prepared with ``begin`` first when the channel overrides it."""
        ref = ""
        if type(channel).begin is not Channel.begin:
            ref = await channel.begin(batch)
            assert isinstance(ref, str), f"begin must return the provider's reference as a str, not {ref!r}"
        carried = [attrs.evolve(m, batch_ref=ref) for m in batch]
        return ref, carried, await channel.send(carried)

    def _sent(self, channel: Channel, batch: list[Message]) -> tuple[str, list[Message], Any]:
        sent: tuple[str, list[Message], Any] = self._run(self._closing(channel, self._send(channel, batch)))
        return sent

    async def _closing(self, channel: Channel, coroutine: Any) -> Any:
        try:
            return await coroutine
        finally:
            await channel.aclose()

    def _batch(self, channel: Channel) -> list[Message]:
        samples = list(self.sample_messages())
        batch = (samples * (1 + min(channel.batch_size, 5) // len(samples)))[: max(1, min(channel.batch_size, 5))]
        return [attrs.evolve(m, key=uuid.uuid4().hex) for m in batch]

    def test_send_answers_each_message_in_order(self) -> None:
        channel = self.make_channel()
        batch = self._batch(channel)
        other = self.make_channel()
        empty = self._run(self._closing(other, other.send([])))
        assert list(empty) == [], "an empty batch answers an empty list"
        _, _, results = self._sent(channel, batch)
        assert len(results) == len(batch), f"send answered {len(results)} results for {len(batch)} messages"
        assert all(isinstance(r, _RESULTS) for r in results), f"send answers Accepted, Rejected, Transient or Ambiguous: {results}"
        assert any(isinstance(r, Accepted) for r in results), "no sample message was accepted"

    def test_begin_returns_the_providers_reference(self) -> None:
        channel = self.make_channel()
        if type(channel).begin is Channel.begin:
            return
        ref, carried, results = self._sent(channel, self._batch(channel))
        assert isinstance(ref, str)
        assert all(m.batch_ref == ref for m in carried)
        assert len(results) == len(carried)

    def test_reconcile_answers_each_message(self) -> None:
        channel = self.make_channel()
        samples = list(self.sample_messages())
        answers = self._run(self._closing(channel, channel.reconcile(samples)))
        assert len(answers) == len(samples)
        assert all(a is None or isinstance(a, _RESULTS) for a in answers), f"reconcile answers a result or None: {answers}"

    def test_reconcile_never_calls_an_accepted_message_not_taken(self) -> None:
        channel = self.make_channel()

        async def go() -> tuple[list[Message], Any]:
            _, carried, results = await self._send(channel, self._batch(channel))
            accepted = [m for m, r in zip(carried, results, strict=True) if isinstance(r, Accepted)]
            return accepted, await channel.reconcile(accepted)

        accepted, answers = self._run(self._closing(channel, go()))
        assert len(answers) == len(accepted)
        assert all(a is None or isinstance(a, _RESULTS) for a in answers), f"reconcile answers a result or None: {answers}"
        wrong = [(m.key, a) for m, a in zip(accepted, answers, strict=True) if isinstance(a, Transient)]
        assert not wrong, f"reconcile said 'not taken' (Transient) of messages send accepted; they would be sent twice: {wrong}"
