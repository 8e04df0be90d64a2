"""E-mail over SMTP, with the advertising headers the renderer adds (``List-Unsubscribe``, one-click POST).

Each message's ``Message-ID`` is derived from its idempotency key, so a mail system that drops a
repeated Message-ID sees a resend as the same mail.  One connection per batch; STARTTLS and login
when configured (the password from the configuration or the environment variable ``password_env``).
"""

from __future__ import annotations

import asyncio
import os
import smtplib
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formataddr

from shopcrm.channels._base import Accepted, Channel, Message, Rejected, SendResult, Transient

__all__ = ["SmtpChannel"]


class SmtpChannel(Channel):
    """Sends ``email`` messages through an SMTP server.

    A 5xx answer rejects the message (the address or the content is refused), a 4xx or a lost
    connection is transient.  ``starttls`` upgrades the connection; ``username`` with ``password``
    (or the variable named by ``password_env``) logs in.
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
        self.host, self.port, self.sender, self.sender_name = host, port, sender, sender_name
        self.username = username
        self.password = password if password is not None else os.environ.get(password_env)
        if username and not self.password:
            raise ValueError(f"SMTP login as {username!r} needs a password: pass password=... or set {password_env}")
        self.starttls, self.timeout, self.domain = starttls, timeout, domain
        self.rate_per_second = rate_per_second

    def email(self, message: Message) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = formataddr((self.sender_name, self.sender)) if self.sender_name else self.sender
        mail["To"] = message.to
        mail["Subject"] = message.subject or ""
        mail["Message-ID"] = f"<{message.key}@{self.domain}>"
        for name, value in message.headers:
            mail[name] = value
        mail.set_content(message.text)
        if message.html:
            mail.add_alternative(message.html, subtype="html")
        return mail

    def validate(self, message: Message) -> list[str]:
        problems = super().validate(message)
        if message.kind == "email" and not message.subject:
            problems.append("an e-mail needs a subject")
        if "@" not in message.to:
            problems.append(f"{message.to!r} is not an e-mail address")
        return problems

    def _send_all(self, batch: Sequence[Message]) -> list[SendResult]:
        try:
            client = smtplib.SMTP(self.host, self.port, timeout=self.timeout, local_hostname=self.domain)
        except (OSError, smtplib.SMTPException) as error:
            return [Transient(f"cannot reach {self.host}:{self.port}: {error}", code="connection")] * len(batch)
        results: list[SendResult] = []
        try:
            if self.starttls:
                client.starttls(context=ssl.create_default_context())
            if self.username:
                client.login(self.username, self.password or "")
            for message in batch:
                results.append(self._one(client, message))
        except smtplib.SMTPAuthenticationError as error:
            results += [Rejected(f"login refused: {error.smtp_code} {error.smtp_error!r}", code=str(error.smtp_code))] * (len(batch) - len(results))
        except (OSError, smtplib.SMTPException) as error:
            results += [Transient(f"connection lost: {error}", code="connection")] * (len(batch) - len(results))
        finally:
            try:
                client.quit()
            except (OSError, smtplib.SMTPException):
                client.close()
        return results

    def _one(self, client: smtplib.SMTP, message: Message) -> SendResult:
        mail = self.email(message)
        try:
            refused = client.send_message(mail, from_addr=self.sender, to_addrs=[message.to])
        except smtplib.SMTPRecipientsRefused as error:
            code, text = next(iter(error.recipients.values()))
            return self._refused(code, text)
        except smtplib.SMTPSenderRefused as error:
            return self._refused(error.smtp_code, error.smtp_error)
        except smtplib.SMTPDataError as error:
            return self._refused(error.smtp_code, error.smtp_error)
        if refused:
            code, text = next(iter(refused.values()))
            return self._refused(code, text)
        return Accepted(provider_id=str(mail["Message-ID"]))

    @staticmethod
    def _refused(code: int, text: bytes | str) -> SendResult:
        detail = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
        if 400 <= code < 500:
            return Transient(f"SMTP {code} {detail}", code=str(code))
        return Rejected(f"SMTP {code} {detail}", code=str(code))

    async def send(self, batch: Sequence[Message]) -> list[SendResult]:
        return await asyncio.to_thread(self._send_all, batch)


