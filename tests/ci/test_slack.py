"""Tests for Slack payloads and both ways of posting them."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import responses
from responses import matchers
from responses.registries import OrderedRegistry

from ci.errors import ConfigError
from ci.http import HttpClient
from ci.slack import (
    SECTION_TEXT_LIMIT,
    TRUNCATION_MARKER,
    Message,
    Slack,
    SlackError,
    escape,
    link,
    section_block,
    truncate,
)
from tests.ci.support import SECRETS, SLACK_API_URL, SLACK_WEBHOOK_URL, no_sleep

POST_MESSAGE_URL = f"{SLACK_API_URL}/chat.postMessage"


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        yield rsps


@pytest.fixture
def ordered() -> Iterator[responses.RequestsMock]:
    """A mock that also fails when requests arrive out of registration order."""
    with responses.RequestsMock(
        assert_all_requests_are_fired=True, registry=OrderedRegistry
    ) as rsps:
        yield rsps


def webhook_slack() -> Slack:
    slack = Slack.from_environ(
        {"SLACK_WEBHOOK_URL": SLACK_WEBHOOK_URL},
        channel=None,
        http=HttpClient("slack", sleep=no_sleep),
    )
    assert slack is not None
    return slack


def bot_slack(channel: str = "#releases") -> Slack:
    slack = Slack.from_environ(
        {"SLACK_BOT_TOKEN": SECRETS["SLACK_BOT_TOKEN"], "SLACK_API_URL": SLACK_API_URL},
        channel=channel,
        http=HttpClient("slack", sleep=no_sleep),
    )
    assert slack is not None
    return slack


def test_escape_special_characters() -> None:
    assert escape('a & b <c> "d"') == 'a &amp; b &lt;c&gt; "d"'


def test_link_escapes_label() -> None:
    assert (
        link("https://x.test/a?b=1", "R&D <1>")
        == "<https://x.test/a?b=1|R&amp;D &lt;1&gt;>"
    )


def test_section_text_cut_at_limit() -> None:
    text = "x" * 5000
    block = section_block(text)
    cut = block["text"]["text"]
    assert len(cut) == SECTION_TEXT_LIMIT
    assert cut.endswith(TRUNCATION_MARKER)


def test_truncate_keeps_short_text() -> None:
    assert truncate("short", 3000) == "short"


def test_truncate_on_code_point_boundary() -> None:
    # Astral-plane emoji are one code point each but two UTF-16 units and four
    # UTF-8 bytes, so a byte- or unit-based cut would split one.
    text = "😀" * 5000
    cut = truncate(text, SECTION_TEXT_LIMIT)
    assert len(cut) == SECTION_TEXT_LIMIT
    assert cut.encode("utf-8").decode("utf-8") == cut
    assert set(cut[: -len(TRUNCATION_MARKER)]) == {"😀"}


def test_truncate_never_splits_entity() -> None:
    kept = 100 - len(TRUNCATION_MARKER)
    # The cut position falls two characters into "&amp;".
    text = "a" * (kept - 2) + escape("&") + "tail" * 10
    cut = truncate(text, 100)
    assert cut == "a" * (kept - 2) + TRUNCATION_MARKER


def test_message_payload_text_with_quotes_newlines_emoji() -> None:
    comment = 'He said "it\'s broken"\nsecond line 🚀 & <b>bold</b>\\ ' + "z" * 5000
    message = Message(
        text="Feedback",
        blocks=[section_block(escape(comment))],
    )
    body = message.payload()
    encoded = json.dumps(body)
    decoded = json.loads(encoded)
    text = decoded["blocks"][0]["text"]["text"]
    assert text.startswith(
        'He said "it\'s broken"\nsecond line 🚀 &amp; &lt;b&gt;bold&lt;/b&gt;\\ '
    )
    assert len(text) == SECTION_TEXT_LIMIT
    assert text.endswith(TRUNCATION_MARKER)


def test_webhook_post_ok(mocked: responses.RequestsMock) -> None:
    message = Message(text="Build failed", blocks=[section_block("*failed*")])
    mocked.post(
        SLACK_WEBHOOK_URL,
        body="ok",
        match=[matchers.json_params_matcher(message.payload())],
    )
    webhook_slack().post(message)


def test_webhook_429_then_ok(ordered: responses.RequestsMock) -> None:
    sleeps: list[float] = []
    slack = Slack.from_environ(
        {"SLACK_WEBHOOK_URL": SLACK_WEBHOOK_URL},
        channel=None,
        http=HttpClient("slack", sleep=sleeps.append),
    )
    assert slack is not None
    ordered.post(
        SLACK_WEBHOOK_URL, status=429, body="rate_limited", headers={"Retry-After": "7"}
    )
    ordered.post(SLACK_WEBHOOK_URL, body="ok")
    slack.post(Message(text="hello"))
    assert sleeps == [7.0]


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, "invalid_payload"),
        (403, "action_prohibited"),
        (404, "no_service"),
        (410, "channel_is_archived"),
    ],
)
def test_webhook_error_redacts_url(
    mocked: responses.RequestsMock, status: int, body: str
) -> None:
    mocked.post(SLACK_WEBHOOK_URL, status=status, body=body)
    with pytest.raises(SlackError) as caught:
        webhook_slack().post(Message(text="hello"))
    message = str(caught.value)
    assert f"returned {status}" in message
    assert body in message
    assert "s3cr3tWebhookPath" not in message
    assert "/services/***" in message


def test_webhook_200_not_ok_is_failure(mocked: responses.RequestsMock) -> None:
    mocked.post(SLACK_WEBHOOK_URL, status=200, body="something else")
    with pytest.raises(SlackError) as caught:
        webhook_slack().post(Message(text="hello"))
    assert "instead of 'ok'" in str(caught.value)


def test_webhook_url_never_logged(
    mocked: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    mocked.post(SLACK_WEBHOOK_URL, status=500, body="oops")
    mocked.post(SLACK_WEBHOOK_URL, status=500, body="oops")
    mocked.post(SLACK_WEBHOOK_URL, status=500, body="oops")
    mocked.post(SLACK_WEBHOOK_URL, status=500, body="oops")
    mocked.post(SLACK_WEBHOOK_URL, status=500, body="oops")
    with pytest.raises(SlackError):
        webhook_slack().post(Message(text="hello"))
    assert "s3cr3tWebhookPath" not in caplog.text
    assert "/services/***" in caplog.text


def test_bot_post_ok(mocked: responses.RequestsMock) -> None:
    message = Message(text="Released", blocks=[section_block("done")])
    mocked.post(
        POST_MESSAGE_URL,
        json={"ok": True, "channel": "C123", "ts": "1700000000.000100"},
        match=[
            matchers.header_matcher(
                {"Authorization": f"Bearer {SECRETS['SLACK_BOT_TOKEN']}"}
            ),
            matchers.json_params_matcher(message.payload("#releases")),
        ],
    )
    bot_slack().post(message)


def test_bot_ok_false_is_failure(mocked: responses.RequestsMock) -> None:
    mocked.post(POST_MESSAGE_URL, json={"ok": False, "error": "channel_not_found"})
    with pytest.raises(SlackError) as caught:
        bot_slack("#nope").post(Message(text="hello"))
    message = str(caught.value)
    assert "channel_not_found" in message
    assert "'#nope'" in message
    assert caught.value.codes == ["channel_not_found"]
    assert SECRETS["SLACK_BOT_TOKEN"] not in message


def test_bot_429_then_ok(ordered: responses.RequestsMock) -> None:
    ordered.post(
        POST_MESSAGE_URL,
        status=429,
        json={"ok": False, "error": "ratelimited"},
        headers={"Retry-After": "1"},
    )
    ordered.post(POST_MESSAGE_URL, json={"ok": True})
    bot_slack().post(Message(text="hello"))


def test_from_environ_not_configured() -> None:
    assert Slack.from_environ({}, channel="#x") is None


def test_from_environ_bot_without_channel() -> None:
    with pytest.raises(ConfigError) as caught:
        Slack.from_environ(
            {"SLACK_BOT_TOKEN": SECRETS["SLACK_BOT_TOKEN"]}, channel=None
        )
    assert "slack.channel" in str(caught.value)
    assert SECRETS["SLACK_BOT_TOKEN"] not in str(caught.value)


def test_from_environ_webhook_wins() -> None:
    slack = Slack.from_environ(
        {"SLACK_WEBHOOK_URL": SLACK_WEBHOOK_URL, "SLACK_BOT_TOKEN": "xoxb-1"},
        channel="#x",
    )
    assert slack is not None
    assert slack.webhook_url == SLACK_WEBHOOK_URL
    assert "s3cr3t" not in slack.destination


def test_from_environ_webhook_not_url() -> None:
    with pytest.raises(ConfigError) as caught:
        Slack.from_environ(
            {"SLACK_WEBHOOK_URL": "hooks.slack.com/services/secret"}, channel=None
        )
    assert "secret" not in str(caught.value)
