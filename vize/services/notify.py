"""Training notifications: email to the owner (SMTP, or an outbox folder) and a signed webhook."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import smtplib
import time
import uuid
from email.message import EmailMessage
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
from sqlalchemy.orm import Session, sessionmaker

from vize.config import Settings
from vize.db.tables import Model, Task, User
from vize.services.fetch import check_url

log = logging.getLogger("vize.notify")
SIGNATURE_HEADER = "X-Vize-Signature"


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _describe(event: str, task: Task, model: Model) -> tuple[str, str]:
    if event == "training_started":
        return (
            f"Training of '{task.name}' started",
            f"Version {model.version} of task '{task.name}' is training.",
        )
    if event == "training_succeeded":
        acc = model.metrics.get("accuracy")
        acc_text = f"{acc:.1%}" if isinstance(acc, float) else "n/a"
        return (
            f"Training of '{task.name}' finished: accuracy {acc_text}",
            f"Version {model.version} of task '{task.name}' is trained.\n"
            f"Accuracy on held-out images: {acc_text}.\n"
            f"Deployed version: {task.production_version}.",
        )
    return (
        f"Training of '{task.name}' failed",
        f"Version {model.version} of task '{task.name}' failed: {model.error}",
    )


class Notifier:
    def __init__(self, settings: Settings, sessions: sessionmaker[Session]) -> None:
        self.settings, self.sessions = settings, sessions

    def __call__(self, event: str, task_id: str, model_id: str) -> None:
        # A notification problem must never fail or retry the training itself.
        try:
            with self.sessions() as db:
                task, model = db.get(Task, task_id), db.get(Model, model_id)
                if task is None or model is None:
                    return
                owner = db.get(User, task.owner_id)
                subject, text = _describe(event, task, model)
                payload = self._payload(event, task, model)
                webhook = (task.webhook_url, task.webhook_secret)
            # Only to a confirmed address: else anyone could mail a stranger through us.
            if owner is not None and owner.notify_email and owner.email and owner.email_verified:
                self.send_email(owner.email, subject, text)
            if webhook[0] and event != "training_started":
                self.post_webhook(webhook[0], webhook[1], payload)
        except Exception:
            log.exception("notification %s for task %s failed", event, task_id)

    @staticmethod
    def _payload(event: str, task: Task, model: Model) -> dict[str, Any]:
        return {
            "event": event,
            "task_id": task.id,
            "task_name": task.name,
            "model_id": model.id,
            "version": model.version,
            "train_status": model.train_status,
            "accuracy": model.metrics.get("accuracy"),
            "error": model.error,
            "production_version": task.production_version,
        }

    def send_email(self, to: str, subject: str, text: str) -> None:
        send_email(self.settings, to, subject, text)

    def post_webhook(self, url: str, secret: str, payload: dict[str, Any]) -> None:
        target = check_url(url, self.settings.url_allow_hosts)  # pinned: no DNS rebinding
        body = json.dumps(payload, sort_keys=True).encode()
        headers = {
            "Content-Type": "application/json",
            "Host": target.host_header,
            SIGNATURE_HEADER: sign(secret, body),
        }
        with httpx.Client(timeout=10, follow_redirects=False, trust_env=False) as client:
            client.post(
                target.url,
                content=body,
                headers=headers,
                extensions={"sni_hostname": target.server_name},
            ).raise_for_status()


def send_email(settings: Settings, to: str, subject: str, text: str) -> None:
    """To the outbox folder, or through VIZE_SMTP_URL."""
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = settings.mail_from, to, subject
    msg["Message-ID"] = f"<{uuid.uuid4()}@vize>"
    msg.set_content(text)
    if not settings.smtp_url:
        outbox = settings.data_dir / "outbox"
        outbox.mkdir(parents=True, exist_ok=True)
        name = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}.eml"
        (outbox / name).write_bytes(bytes(msg))
        return
    url = urlsplit(settings.smtp_url)
    smtp_cls = smtplib.SMTP_SSL if url.scheme == "smtps" else smtplib.SMTP
    with smtp_cls(url.hostname or "localhost", url.port or 25, timeout=10) as smtp:
        if url.scheme == "smtp+starttls":
            smtp.starttls()
        if url.username:
            smtp.login(unquote(url.username), unquote(url.password or ""))
        smtp.send_message(msg)
