"""E-mail over SMTP, with the advertising headers the renderer adds (``List-Unsubscribe``, one-click POST).

Each message's ``Message-ID`` is derived from its idempotency key, so a mail system that drops a
repeated Message-ID sees a resend as the same mail.  One connection per batch; STARTTLS and login
when configured (the password from the configuration or the environment variable ``password_env``).

Every mail is built and checked on its own (:meth:`SmtpChannel.validate` builds it), so one message
that cannot be built (a CR or LF in a header, an address that is not one address) is rejected alone and
never stops the others.  A batch is one SMTP session and is settled per message: each mail the server
answered ``250`` after its data is :class:`Accepted`; the one whose data was being written or whose
answer was awaited when the connection failed is :class:`Ambiguous` (the server may have queued it);
those not yet started are :class:`Transient`.  A ``4xx`` answer is :class:`Transient`, a ``5xx``
:class:`Rejected`.  SMTP cannot be asked afterwards what it took, so the channel does not deduplicate
and cannot reconcile: an ambiguous mail ends ``unknown`` and is never resent.
"""

from __future__ import annotations

import asyncio
import email.policy
import os
import re
import smtplib
import ssl
from collections.abc import Sequence
from email.generator import BytesGenerator
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formataddr
from io import BytesIO

from shopcrm.channels._base import Accepted, Ambiguous, Channel, Message, Rejected, SendResult, Transient

__all__ = ["SmtpChannel"]

#: the policy mails are built with: CRLF line ends, and bodies in 7-bit transfer encodings (base64 or
#: quoted-printable) so that any server takes them without 8BITMIME
_POLICY = email.policy.SMTP.clone(cte_type="7bit", refold_source="none")
#: the headers written as they are, on one line (RFC 8058's List-Unsubscribe: folded at 78 characters, a long URL
#: became RFC 2047 encoded-words, and no mail client finds the unsubscribe link in those)
_UNFOLDED = frozenset({"list-unsubscribe", "list-unsubscribe-post"})
#: a header field name (RFC 5322 section 3.6.8: printable ASCII but the colon)
_FIELD_NAME = re.compile(r"[!-9;-~]+")
#: characters that may never appear in a header value, an address or a subject (they would end the field)
_BREAKS = re.compile(r"[\r\n\x00]")
#: what a URL inside ``List-Unsubscribe`` may hold (RFC 3986 characters: anything else was not quoted)
_URL = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")


class _Lost(Exception):
    """The connection failed while one mail was under way; ``result`` is that mail's outcome."""

    def __init__(self, result: SendResult) -> None:
        super().__init__(result)
        self.result = result


def _envelope_address(address: str) -> str:
    """``address`` as the envelope needs it (one ASCII addr-spec, its domain IDNA-encoded), or ValueError."""
    if _BREAKS.search(address):
        raise ValueError(f"{address!r} contains a line break")
    try:
        parsed = Address(addr_spec=address)
    except Exception as error:  # the parser raises ValueError, IndexError and its own defects
        raise ValueError(f"{address!r} is not an e-mail address ({error})") from None
    if parsed.addr_spec != address or not parsed.username or not parsed.domain:
        raise ValueError(f"{address!r} is not one e-mail address")
    if not parsed.username.isascii():
        raise ValueError(f"{address!r} has a non-ASCII local part, which needs SMTPUTF8 (not used by this channel)")
    domain = parsed.domain
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError as error:
            raise ValueError(f"{address!r} has a domain that cannot be IDNA-encoded ({error})") from None
    return f"{address.rsplit('@', 1)[0]}@{domain}"


class SmtpChannel(Channel):
    """Sends ``email`` messages through an SMTP server.

    A 5xx answer rejects the message (the address or the content is refused), a 4xx, or a connection
    that fails before the mail's data was written, is transient; a connection that fails after (or while)
    the data was written makes that mail ambiguous.  ``starttls`` upgrades the connection; ``username``
    with ``password`` (or the variable named by ``password_env``) logs in.
    """

    name = "smtp"
    kinds = frozenset({"email"})
    batch_size = 50

    def __init__(
        self,
        host: str,
        port: int = 587,
        *,
        sender: str,
        sender_name: str = "",
        username: str | None = None,
        password: str | None = None,
        password_env: str = "SHOPCRM_SMTP_PASSWORD",
        starttls: bool = False,
        timeout: float = 30.0,
        domain: str = "shopcrm.local",
        rate_per_second: float | None = None,
    ) -> None:
        try:
            self._envelope_sender = _envelope_address(sender)
        except ValueError as error:
            raise ValueError(f"the SMTP sender must be one e-mail address: {error}") from None
        if _BREAKS.search(sender_name) or _BREAKS.search(domain) or not domain:
            raise ValueError("the SMTP sender_name and domain must not contain line breaks (and domain must be set)")
        self.host, self.port, self.sender, self.sender_name = host, port, sender, sender_name
        self.username = username
        self.password = password if password is not None else os.environ.get(password_env)
        if username and not self.password:
            raise ValueError(f"SMTP login as {username!r} needs a password: pass password=... or set {password_env}")
        self.starttls, self.timeout, self.domain = starttls, timeout, domain
        self.rate_per_second = rate_per_second

    def email(self, message: Message) -> EmailMessage:
        """The mail for ``message``; ValueError (naming the field) when it cannot be built."""
        for field, value in (("to", message.to), ("subject", message.subject or ""), ("key", message.key)):
            if _BREAKS.search(value):
                raise ValueError(f"the {field} {value!r} contains a line break")
        mail = EmailMessage(policy=_POLICY)
        mail["From"] = formataddr((self.sender_name, self.sender)) if self.sender_name else self.sender
        mail["To"] = _envelope_address(message.to)
        mail["Subject"] = message.subject or ""
        mail["Message-ID"] = f"<{message.key}@{self.domain}>"
        for name, value in message.headers:
            if not _FIELD_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a header field name")
            if _BREAKS.search(value):
                raise ValueError(f"the header {name} {value!r} contains a line break")
            if name.lower() == "list-unsubscribe":
                for url in re.findall(r"<([^>]*)>", value) or [value]:
                    if not _URL.fullmatch(url):
                        raise ValueError(f"the List-Unsubscribe URL {url!r} has characters that must be URL-encoded")
            if name.lower() in _UNFOLDED:
                if not value.isascii() or len(name) + 2 + len(value) > 998:
                    raise ValueError(f"the header {name} must be ASCII on one line of at most 998 characters "
                                     f"(RFC 5322); got {len(value)} characters")
                mail.set_raw(name, value)  # not refolded: _POLICY keeps a raw header as it is
                continue
            try:
                mail[name] = value
            except ValueError as error:
                raise ValueError(f"the header {name}: {error}") from None
        mail.set_content(message.text)
        if message.html:
            mail.add_alternative(message.html, subtype="html")
        return mail

    def _data(self, message: Message) -> bytes:
        """The mail for ``message`` as the bytes of an SMTP DATA section (CRLF, dot-stuffed, terminated)."""
        buffer = BytesIO()
        BytesGenerator(buffer, policy=_POLICY).flatten(self.email(message), linesep="\r\n")
        data = buffer.getvalue()
        if not data.endswith(b"\r\n"):
            data += b"\r\n"
        return re.sub(rb"(?m)^\.", b"..", data) + b".\r\n"

    def validate(self, message: Message) -> list[str]:
        return self._checked(message)[0]

    def _checked(self, message: Message) -> tuple[list[str], bytes]:
        """What is wrong with ``message`` (building it is part of the check), and its DATA bytes when nothing."""
        problems = super().validate(message)
        if message.kind == "email" and not message.subject:
            problems.append("an e-mail needs a subject")
        if "@" not in message.to:
            problems.append(f"{message.to!r} is not an e-mail address")
        if problems:
            return problems, b""
        try:
            return [], self._data(message)
        except Exception as error:  # whatever stops the mail being built stops only this message
            return [f"the e-mail cannot be built: {error}"], b""

    def _send_all(self, batch: Sequence[Message]) -> list[SendResult]:
        results: list[SendResult | None] = [None] * len(batch)
        ready: list[tuple[int, bytes]] = []
        for index, message in enumerate(batch):
            problems, data = self._checked(message)
            if problems:
                results[index] = Rejected("; ".join(problems), code="invalid")
            else:
                ready.append((index, data))
        if ready:
            self._session(batch, ready, results)
        return [r if r is not None else Transient("not attempted", code="connection") for r in results]

    def _session(self, batch: Sequence[Message], ready: list[tuple[int, bytes]], results: list[SendResult | None]) -> None:
        """Send the ``ready`` mails in one session, filling in ``results``; those never started stay None."""
        try:
            client = smtplib.SMTP(self.host, self.port, timeout=self.timeout, local_hostname=self.domain)
        except (OSError, smtplib.SMTPException) as error:
            for index, _ in ready:
                results[index] = Transient(f"cannot reach {self.host}:{self.port}: {error}", code="connection")
            return
        try:
            try:
                client.ehlo_or_helo_if_needed()
                if self.starttls:
                    code, text = client.starttls(context=ssl.create_default_context())
                    if code != 220:  # smtplib carries on in clear text after a refused STARTTLS: we do not
                        raise smtplib.SMTPResponseException(code, text)
                if self.username:
                    client.login(self.username, self.password or "")
            except smtplib.SMTPResponseException as error:
                outcome = self._answer(error.smtp_code, error.smtp_error, "before any mail")
                for index, _ in ready:
                    results[index] = outcome
                return
            except (OSError, smtplib.SMTPException) as error:
                for index, _ in ready:
                    results[index] = Transient(f"connection failed before any mail: {error}", code="connection")
                return
            for index, data in ready:
                try:
                    results[index] = self._one(client, batch[index], data)
                    if not isinstance(results[index], Accepted):
                        client.rset()
                except _Lost as lost:
                    results[index] = lost.result
                    return
                except (OSError, smtplib.SMTPException):
                    return  # RSET after a settled mail failed: the mails after it were never started
        finally:
            try:
                client.quit()
            except (OSError, smtplib.SMTPException):
                client.close()

    def _one(self, client: smtplib.SMTP, message: Message, data: bytes) -> SendResult:
        """One mail transaction; raises :class:`_Lost` with the mail's outcome when the connection fails."""
        try:
            code, text = client.mail(self._envelope_sender)
            if code != 250:
                return self._answer(code, text, "to MAIL FROM")
            code, text = client.rcpt(_envelope_address(message.to))
            if code not in (250, 251):
                return self._answer(code, text, "to RCPT TO")
            client.putcmd("data")
            code, text = client.getreply()
            if code != 354:
                return self._answer(code, text, "to DATA")
        except (OSError, smtplib.SMTPException) as error:
            raise _Lost(Transient(f"connection lost before the mail's data was sent: {error}", code="connection")) from None
        try:
            client.send(data)
            code, text = client.getreply()
        except (OSError, smtplib.SMTPException) as error:
            raise _Lost(Ambiguous(f"connection lost after the mail's data was sent, before the server answered: {error}",
                                  code="connection")) from None
        if 200 <= code < 300:
            return Accepted(provider_id=f"<{message.key}@{self.domain}>")
        if 400 <= code < 600:
            return self._answer(code, text, "to the mail's data")
        raise _Lost(Ambiguous(f"unreadable answer to the mail's data: {code} {self._text(text)}", code=str(code)))

    @staticmethod
    def _text(text: bytes | str) -> str:
        return text.decode(errors="replace") if isinstance(text, bytes) else str(text)

    @classmethod
    def _answer(cls, code: int, text: bytes | str, when: str) -> SendResult:
        """The outcome of an SMTP answer that refused a mail (before or after its data): the server kept nothing."""
        detail = f"SMTP {code} {cls._text(text)} ({when})"
        if 500 <= code < 600:
            return Rejected(detail, code=str(code))
        return Transient(detail, code=str(code) if code > 0 else "protocol")

    async def send(self, batch: Sequence[Message]) -> list[SendResult]:
        return await asyncio.to_thread(self._send_all, batch)
