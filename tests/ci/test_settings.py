"""Tests for reading and validating the release settings file."""

from __future__ import annotations

from pathlib import Path

import pytest

from ci.errors import ConfigError
from ci.settings import (
    Settings,
    load_settings,
    parse_settings,
    render_template,
)

FULL = """\
platform: MAC_OS
app_name: Acme
submit_for_review:
  enabled: false
  uses_non_exempt_encryption: true
  whats_new: "Bug fixes {and} more"
  whats_new_locale: de-DE
  cancel_other_submission: true
  build_wait_timeout: 600
  beta_groups: [QA, Friends]
release:
  merge_from: release
  merge_into: main
  tag: "release-{version}"
  github_release: true
jira:
  project: IOS
  version_name: "iOS {version}"
  done_transition: Released
slack:
  channel: "#releases"
  notify_states: [REJECTED]
  beta_notify_states: [BETA_APPROVED]
  include_tester_email: true
  crash_log_lines: 5
"""


def test_settings_defaults_when_empty() -> None:
    settings = parse_settings("")
    assert settings.platform == "IOS"
    assert settings.submit_for_review.enabled is True
    assert settings.submit_for_review.uses_non_exempt_encryption is None
    assert settings.release.merge_from == "develop"
    assert settings.release.merge_into == "master"
    assert settings.release.tag == "v{version}"
    assert settings.jira.version_name == "{version}"
    assert settings.jira.done_transition == "Done"
    assert settings.jira.enabled is False
    assert settings.slack.notify_states == (
        "REJECTED",
        "METADATA_REJECTED",
        "INVALID_BINARY",
        "DEVELOPER_REJECTED",
    )
    assert settings.slack.include_tester_email is False


def test_settings_full_file() -> None:
    settings = parse_settings(FULL, source="asc-release.yml")
    assert settings.platform == "MAC_OS"
    assert settings.app_name == "Acme"
    assert settings.submit_for_review.enabled is False
    assert settings.submit_for_review.whats_new == "Bug fixes {and} more"
    assert settings.submit_for_review.whats_new_locale == "de-DE"
    assert settings.submit_for_review.beta_groups == ("QA", "Friends")
    assert settings.submit_for_review.build_wait_timeout == 600
    assert settings.release.merge_into == "main"
    assert settings.release.github_release is True
    assert settings.jira.enabled is True
    assert settings.jira.version_name == "iOS {version}"
    assert settings.slack.channel == "#releases"
    assert settings.slack.notify_states == ("REJECTED",)
    assert settings.slack.crash_log_lines == 5
    assert settings.source == "asc-release.yml"


def test_settings_tag_null_disables_tagging() -> None:
    settings = parse_settings("release:\n  tag: null\n")
    assert settings.release.tag is None


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        (
            "plattform: IOS\n",
            ["'plattform'", "did you mean 'platform'", "allowed keys"],
        ),
        ("slack:\n  chanel: x\n", ["'slack.chanel'", "'slack.channel'"]),
        (
            "platform: ANDROID\n",
            ["platform", "'ANDROID'", "IOS, MAC_OS, TV_OS, VISION_OS"],
        ),
        (
            "submit_for_review:\n  enabled: 'yes'\n",
            ["submit_for_review.enabled", "'yes'", "true or false"],
        ),
        (
            "submit_for_review:\n  build_wait_timeout: -1\n",
            ["build_wait_timeout", "-1", "at least 0"],
        ),
        (
            "submit_for_review:\n  build_wait_timeout: true\n",
            ["build_wait_timeout", "True", "whole number"],
        ),
        (
            "release:\n  merge_from: 42\n",
            ["release.merge_from", "42", "non-empty string"],
        ),
        (
            "release:\n  merge_into: ''\n",
            ["release.merge_into", "''", "non-empty string"],
        ),
        ("release:\n  tag: 'v{ver}'\n", ["release.tag", "{ver}", "{version}"]),
        (
            "release:\n  tag: 'v{version'\n",
            ["release.tag", "'v{version'", "not a valid template"],
        ),
        (
            "slack:\n  notify_states: REJECTED\n",
            ["slack.notify_states", "'REJECTED'", "list of strings"],
        ),
        (
            "slack:\n  notify_states: [REJECTD]\n",
            ["slack.notify_states", "'REJECTD'", "METADATA_REJECTED"],
        ),
        (
            "slack:\n  beta_notify_states: [APPROVED]\n",
            ["beta_notify_states", "'APPROVED'", "BETA_APPROVED"],
        ),
        ("jira: [IOS]\n", ["jira", "['IOS']", "allowed keys"]),
        ("- platform\n", ["mapping", "['platform']"]),
    ],
)
def test_settings_invalid_value_named(text: str, fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings(text, source="asc-release.yml")
    message = str(caught.value)
    assert message.startswith("asc-release.yml: ")
    for fragment in fragments:
        assert fragment in message


def test_settings_yaml_error_has_line() -> None:
    text = "platform: IOS\nrelease:\n  merge_from: [develop\n  merge_into: master\n"
    with pytest.raises(ConfigError) as caught:
        parse_settings(text, source="asc-release.yml")
    assert "invalid YAML at line 4" in str(caught.value)


def test_settings_missing_default_file_uses_defaults(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    settings = load_settings(environ={"GITHUB_WORKSPACE": str(tmp_path)})
    assert settings == Settings()
    assert "using the defaults" in caplog.text


def test_settings_default_path_in_workspace(tmp_path: Path) -> None:
    (tmp_path / ".github").mkdir()
    (tmp_path / ".github" / "asc-release.yml").write_text("platform: TV_OS\n")
    settings = load_settings(environ={"GITHUB_WORKSPACE": str(tmp_path)})
    assert settings.platform == "TV_OS"


def test_settings_explicit_missing_file_rejected(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yml"
    with pytest.raises(ConfigError) as caught:
        load_settings(missing)
    assert str(missing) in str(caught.value)
    assert "--config" in str(caught.value)


def test_example_settings_file_is_valid() -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "asc-release.yml"
    settings = load_settings(example)
    assert settings.jira.project == "IOS"
    assert settings.release.tag == "v{version}"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("v{version}", "v1.2.0"),
        ("{app} {version} ({build})", "Acme 1.2.0 (42)"),
        ("{platform}-{version}", "IOS-1.2.0"),
        ("{{literal}} {version}", "{literal} 1.2.0"),
    ],
)
def test_render_template_fills_fields(template: str, expected: str) -> None:
    rendered = render_template(
        template, version="1.2.0", build="42", platform="IOS", app="Acme"
    )
    assert rendered == expected


@pytest.mark.parametrize(
    ("text", "expected"), [("false", False), ("true", True), ("null", None)]
)
def test_settings_encryption_answer_may_be_unset(
    text: str, expected: bool | None
) -> None:
    settings = parse_settings(
        f"submit_for_review:\n  uses_non_exempt_encryption: {text}\n"
    )
    assert settings.submit_for_review.uses_non_exempt_encryption is expected


def test_settings_encryption_answer_rejects_string() -> None:
    with pytest.raises(ConfigError, match="true or false or null"):
        parse_settings("submit_for_review:\n  uses_non_exempt_encryption: 'no'\n")
