"""Slack messages: Block Kit payloads built as data, sent by webhook or bot token.

Two ways to post, both read from the environment:

- ``SLACK_WEBHOOK_URL``: an incoming webhook. The URL itself is the secret, so
  logs and errors show it only as ``https://hooks.slack.com/services/***``.
  Slack responds with ``200 ok`` in plain text, and errors such as
  ``400 invalid_payload``, ``403 action_prohibited`` or ``404 no_service``.
- ``SLACK_BOT_TOKEN`` with ``slack.channel``: ``chat.postMessage`` on the Web
  API (``SLACK_API_URL``, default ``https://slack.com/api``), which responds with
  ``200`` with ``{"ok": false, "error": "channel_not_found"}`` on failure.

Both paths retry 429 after ``Retry-After`` through :class:`ci.http.HttpClient`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests

from ci.errors import ConfigError
from ci.http import ApiError, HttpClient

logger = logging.getLogger(__name__)

WEBHOOK_URL_VAR = "SLACK_WEBHOOK_URL"
BOT_TOKEN_VAR = "SLACK_BOT_TOKEN"
API_URL_VAR = "SLACK_API_URL"
DEFAULT_API_URL = "https://slack.com/api"

#: Slack's limit for the text of a section block, in characters (Block Kit
#: reference, section block).
SECTION_TEXT_LIMIT = 3000
#: Slack's limit for a header block's plain text (Block Kit reference).
HEADER_TEXT_LIMIT = 150
#: Maximum length of the top-level ``text`` fallback that asc-ci sends, which
#: keeps notifications short on lock screens.
FALLBACK_TEXT_LIMIT = 300
TRUNCATION_MARKER = "… (truncated)"


class SlackError(ApiError):
    """Slack rejected a message (a non-200 response or ``"ok": false``)."""


def escape(text: str) -> str:
    """Escape ``&``, ``<`` and ``>`` so Slack shows free text literally."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def truncate(text: str, limit: int, marker: str = TRUNCATION_MARKER) -> str:
    """Cut ``text`` to at most ``limit`` characters, ending with ``marker``.

    Python strings index by code point, so the cut never splits a character.
    It also never splits an HTML entity made by :func:`escape` (``&amp;``),
    which Slack would otherwise show as stray text.
    """
    if len(text) <= limit:
        return text
    keep = max(limit - len(marker), 0)
    cut = text[:keep]
    ampersand = cut.rfind("&")
    if ampersand != -1 and ";" not in cut[ampersand:] and len(cut) - ampersand < 5:
        cut = cut[:ampersand]
    return cut + marker


def link(url: str, label: str) -> str:
    """Return Slack's ``<url|label>`` link markup with the label escaped."""
    safe_url = url.replace(">", "%3E").replace("|", "%7C").replace("<", "%3C")
    return f"<{safe_url}|{escape(label)}>"


def header_block(text: str) -> dict[str, Any]:
    return {
        "type": "header",
        "text": {
            "type": "plain_text",
            "text": truncate(text, HEADER_TEXT_LIMIT),
            "emoji": True,
        },
    }


def section_block(mrkdwn: str) -> dict[str, Any]:
    """Return a section block; ``mrkdwn`` must already be escaped."""
    return {
        "type": "section",
        "text": {"type": "mrkdwn", "text": truncate(mrkdwn, SECTION_TEXT_LIMIT)},
    }


def fields_block(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Return a section of up to 10 ``*label*: value`` fields (values escaped here)."""
    return {
        "type": "section",
        "fields": [
            {
                "type": "mrkdwn",
                "text": truncate(f"*{escape(label)}*\n{escape(value)}", 2000),
            }
            for label, value in pairs[:10]
        ],
    }


def context_block(mrkdwn: str) -> dict[str, Any]:
    return {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": truncate(mrkdwn, SECTION_TEXT_LIMIT)}],
    }


@dataclass
class Message:
    """A Slack message: the notification ``text`` and its Block Kit ``blocks``.

    ``text`` is plain (it is escaped when the payload is built).
    """

    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)

    def payload(self, channel: str | None = None) -> dict[str, Any]:
        """Return the JSON body for a webhook or for ``chat.postMessage``."""
        body: dict[str, Any] = {
            "text": truncate(escape(self.text), FALLBACK_TEXT_LIMIT),
            "blocks": self.blocks,
        }
        if channel:
            body["channel"] = channel
        return body


def redact_webhook_url(url: str) -> str:
    """Return the webhook URL with its secret path hidden."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/services/***"


class Slack:
    """Posts messages through an incoming webhook or the Web API."""

    def __init__(
        self,
        *,
        webhook_url: str | None = None,
        bot_token: str | None = None,
        channel: str | None = None,
        api_url: str = DEFAULT_API_URL,
        http: HttpClient | None = None,
        session: requests.Session | None = None,
    ) -> None:
        if not webhook_url and not bot_token:
            raise ValueError("Slack needs a webhook URL or a bot token")
        self.webhook_url = webhook_url
        self.bot_token = bot_token
        self.channel = channel
        self.api_url = api_url.rstrip("/")
        self.http = http or HttpClient(
            "slack", session=session, redact_url=self._redact
        )
        if http is not None:
            self.http.redact_url = self._redact

    @classmethod
    def from_environ(
        cls,
        environ: Mapping[str, str],
        channel: str | None,
        http: HttpClient | None = None,
    ) -> Slack | None:
        """Build a client from the environment, or None when Slack is not configured.

        The webhook wins when both are set. Raises ConfigError for a bot token
        without a channel, or a webhook URL that is not http(s).
        """
        webhook_url = environ.get(WEBHOOK_URL_VAR, "").strip()
        bot_token = environ.get(BOT_TOKEN_VAR, "").strip()
        if webhook_url:
            if urlsplit(webhook_url).scheme not in ("http", "https"):
                raise ConfigError(
                    f"{WEBHOOK_URL_VAR} is not an http(s) URL: set it to the "
                    "incoming webhook URL Slack shows for your app"
                )
            return cls(webhook_url=webhook_url, http=http)
        if bot_token:
            if not channel:
                raise ConfigError(
                    f"{BOT_TOKEN_VAR} is set but slack.channel is not: set "
                    "slack.channel in the settings file to a channel name or ID "
                    "the bot has joined"
                )
            api_url = environ.get(API_URL_VAR, "").strip() or DEFAULT_API_URL
            return cls(bot_token=bot_token, channel=channel, api_url=api_url, http=http)
        return None

    @property
    def destination(self) -> str:
        """Where messages go, safe to log."""
        if self.webhook_url:
            return "the Slack incoming webhook"
        return f"Slack channel {self.channel}"

    def _redact(self, url: str) -> str:
        if self.webhook_url and url == self.webhook_url:
            return redact_webhook_url(url)
        return url

    def post(self, message: Message) -> None:
        """Send ``message``; raise SlackError when Slack does not accept it."""
        if self.webhook_url:
            self._post_webhook(message)
        else:
            self._post_api(message)
        logger.info("posted Slack message to %s", self.destination)

    def _post_webhook(self, message: Message) -> None:
        assert self.webhook_url is not None
        redacted_url = redact_webhook_url(self.webhook_url)
        try:
            response = self.http.request(
                "POST", self.webhook_url, json=message.payload()
            )
        except ApiError as exc:
            raise SlackError(
                "POST", redacted_url, exc.status, str(exc), hint=_webhook_hint(exc)
            ) from None
        body = response.text.strip()
        if response.status_code != 200 or body != "ok":
            raise SlackError(
                "POST",
                redacted_url,
                response.status_code,
                f"POST {redacted_url} returned {response.status_code}: {body[:200]!r} "
                "instead of 'ok'",
            )

    def _post_api(self, message: Message) -> None:
        url = f"{self.api_url}/chat.postMessage"
        response = self.http.request(
            "POST",
            url,
            headers={
                "Authorization": f"Bearer {self.bot_token}",
                "Content-Type": "application/json; charset=utf-8",
            },
            json=message.payload(self.channel),
        )
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code != 200 or not isinstance(body, dict):
            raise SlackError(
                "POST",
                url,
                response.status_code,
                f"POST {url} returned {response.status_code} without a JSON body",
            )
        if body.get("ok") is not True:
            error = str(body.get("error") or "unknown_error")
            raise SlackError(
                "POST",
                url,
                response.status_code,
                f"POST {url} returned {response.status_code}: ok=false {error}",
                errors=[{"code": error}],
                hint=_api_hint(error, self.channel),
            )
        for warning in body.get("response_metadata", {}).get("warnings", []) or []:
            logger.warning("Slack chat.postMessage warning: %s", warning)


def _webhook_hint(exc: ApiError) -> str | None:
    if exc.status in (403, 404, 410):
        return (
            f"check that {WEBHOOK_URL_VAR} is the current incoming webhook URL "
            "and that the app is still installed in the workspace"
        )
    if exc.status == 400:
        return "Slack rejected the message body; rerun with --verbose to see the step"
    return None


def _api_hint(error: str, channel: str | None) -> str | None:
    if error in ("channel_not_found", "not_in_channel"):
        return (
            f"invite the bot to {channel!r} or set slack.channel to a channel ID "
            "the bot can post to"
        )
    if error in ("invalid_auth", "not_authed", "token_revoked", "account_inactive"):
        return f"{BOT_TOKEN_VAR} is invalid or revoked: create a new bot token"
    if error == "missing_scope":
        return "add the chat:write scope to the Slack app and reinstall it"
    return None
