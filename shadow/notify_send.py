"""Sending one message: an e-mail over SMTP (smtplib, STARTTLS or TLS, a login), or a
JSON POST to a webhook (urllib). Both block: the Notifier calls them from a worker
thread, one at a time. A failure raises DeliveryError, `permanent` when trying again
cannot help (an SMTP 5xx answer, an HTTP 4xx other than 408 and 429)."""

from __future__ import annotations

import http.client
import smtplib
import ssl
import urllib.error
import urllib.request
from email.message import EmailMessage
from email.utils import formatdate

from shadow.notify_config import EmailConfig, WebhookConfig

RETRIED_HTTP = (408, 425, 429)  # client errors that say "later"


class DeliveryError(Exception):
    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


def send_email(config: EmailConfig, message_id: str, subject: str, body: str) -> None:
    email = EmailMessage()
    email["From"] = config.sender
    email["To"] = ", ".join(config.to)
    email["Subject"] = subject
    email["Date"] = formatdate(localtime=False)
    email["Message-ID"] = f"<{message_id}@ombre>"
    email.set_content(body)
    context = ssl.create_default_context(
        cafile=None if config.cafile is None else str(config.cafile))
    try:
        if config.security == "tls":
            client: smtplib.SMTP = smtplib.SMTP_SSL(config.host, config.port,
                                                    timeout=config.timeout_s, context=context)
        else:
            client = smtplib.SMTP(config.host, config.port, timeout=config.timeout_s)
        with client:
            if config.security == "starttls":
                client.starttls(context=context)
            if config.username is not None and config.password is not None:
                client.login(config.username, config.password.get_secret_value())
            client.send_message(email)
    except smtplib.SMTPResponseException as exc:
        text = exc.smtp_error.decode(errors="replace") if isinstance(
            exc.smtp_error, bytes) else str(exc.smtp_error)
        raise DeliveryError(f"SMTP {config.host}:{config.port} answered {exc.smtp_code} "
                            f"{text}", permanent=exc.smtp_code >= 500) from None
    except smtplib.SMTPRecipientsRefused as exc:
        raise DeliveryError(f"SMTP {config.host}:{config.port} refused every recipient: "
                            f"{', '.join(exc.recipients)}", permanent=True) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"SMTP {config.host}:{config.port}: "
                            f"{type(exc).__name__}: {exc}") from None


def send_webhook(config: WebhookConfig, message_id: str, payload: str) -> None:
    headers = {"Content-Type": "application/json", "Idempotency-Key": message_id,
               "User-Agent": "ombre-notifications"}
    if config.token is not None:
        headers["Authorization"] = f"Bearer {config.token.get_secret_value()}"
    request = urllib.request.Request(config.url, data=payload.encode(), headers=headers,
                                     method="POST")
    context = ssl.create_default_context(
        cafile=None if config.cafile is None else str(config.cafile))
    try:
        with urllib.request.urlopen(request, timeout=config.timeout_s, context=context) as reply:
            reply.read(65536)
    except urllib.error.HTTPError as exc:
        exc.close()
        permanent = 400 <= exc.code < 500 and exc.code not in RETRIED_HTTP
        raise DeliveryError(f"webhook answered HTTP {exc.code} {exc.reason}",
                            permanent=permanent) from None
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise DeliveryError(f"webhook unreachable: {reason}") from None

