from __future__ import annotations

from pathlib import Path

import pytest

from relay.config import ConfigError, load_settings

BASE_ENV = {
    "ASC_WEBHOOK_SECRET": "current-secret-value",
    "GITHUB_TOKEN": "github_pat_example",
    "GITHUB_REPOSITORY": "example/ios-app",
}


def test_environment_describes_default_route() -> None:
    settings = load_settings(dict(BASE_ENV))
    route = settings.routes["default"]
    assert list(settings.routes) == ["default"]
    assert route.path == "/webhook"
    assert route.secrets == (b"current-secret-value",)
    assert route.repository == "example/ios-app"
    assert route.event_type == "asc-webhook"
    assert route.github is not None and route.github.token == "github_pat_example"
    assert settings.github_api_url == "https://api.github.com"
    assert settings.database == "relay.db"


def test_previous_secret_is_accepted_during_rotation() -> None:
    env = dict(BASE_ENV, ASC_WEBHOOK_SECRET_PREVIOUS="old-secret-value")
    assert load_settings(env).routes["default"].secrets == (
        b"current-secret-value",
        b"old-secret-value",
    )


def test_secret_files_are_read(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("from-file-secret\n")
    (tmp_path / "previous").write_text("previous-from-file\n")
    env = dict(BASE_ENV)
    del env["ASC_WEBHOOK_SECRET"]
    env["ASC_WEBHOOK_SECRET_FILE"] = str(tmp_path / "secret")
    env["ASC_WEBHOOK_SECRET_PREVIOUS_FILE"] = str(tmp_path / "previous")
    assert load_settings(env).routes["default"].secrets == (
        b"from-file-secret",
        b"previous-from-file",
    )


def test_missing_secret_refuses_to_start() -> None:
    env = dict(BASE_ENV)
    del env["ASC_WEBHOOK_SECRET"]
    with pytest.raises(
        ConfigError, match="ASC_WEBHOOK_SECRET or ASC_WEBHOOK_SECRET_FILE"
    ):
        load_settings(env)


def test_blank_secret_refuses_to_start() -> None:
    with pytest.raises(ConfigError, match="no webhook secret"):
        load_settings(dict(BASE_ENV, ASC_WEBHOOK_SECRET="   "))


def test_unreadable_secret_file_names_path(tmp_path: Path) -> None:
    env = dict(
        BASE_ENV, ASC_WEBHOOK_SECRET="", ASC_WEBHOOK_SECRET_FILE=str(tmp_path / "nope")
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    assert "ASC_WEBHOOK_SECRET_FILE=" in str(caught.value)
    assert "nope" in str(caught.value)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"GITHUB_REPOSITORY": ""}, "GITHUB_REPOSITORY is not set"),
        ({"GITHUB_REPOSITORY": "just-a-name"}, "use OWNER/NAME"),
        ({"GITHUB_REPOSITORY": "a/b/c"}, "use OWNER/NAME"),
        ({"RELAY_EVENT_TYPE": "x" * 101}, "1 to 100 characters"),
        ({"GITHUB_TOKEN": ""}, "no GitHub credentials"),
        ({"GITHUB_API_URL": "api.github.com"}, "not an http(s) URL"),
        ({"RELAY_MAX_RETRY_AGE": "-5"}, "positive number"),
        ({"RELAY_MAX_RETRY_AGE": "soon"}, "positive number"),
        ({"GITHUB_TOKEN": "", "GITHUB_APP_ID": "abc"}, "is not a number"),
        ({"GITHUB_TOKEN": "", "GITHUB_APP_ID": "123"}, "has no private key"),
    ],
    ids=[
        "no-repo",
        "repo-no-owner",
        "repo-too-deep",
        "long-event-type",
        "no-credentials",
        "api-url-without-scheme",
        "negative-age",
        "word-age",
        "app-id-word",
        "app-no-key",
    ],
)
def test_invalid_environment_is_rejected(changes: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(dict(BASE_ENV, **changes))
    assert message in str(caught.value)


def test_event_type_of_100_characters_is_accepted() -> None:
    settings = load_settings(dict(BASE_ENV, RELAY_EVENT_TYPE="x" * 100))
    assert len(settings.routes["default"].event_type) == 100


def test_errors_never_contain_secrets() -> None:
    env = dict(BASE_ENV, GITHUB_REPOSITORY="bad")
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    assert "current-secret-value" not in str(caught.value)
    assert "github_pat_example" not in str(caught.value)


def test_dry_run_needs_no_github_credentials() -> None:
    env = dict(BASE_ENV, GITHUB_TOKEN="")
    settings = load_settings(env, dry_run=True)
    assert settings.dry_run is True
    assert settings.routes["default"].github is None


def test_github_app_settings(tmp_path: Path) -> None:
    key = tmp_path / "app.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n")
    env = dict(
        BASE_ENV,
        GITHUB_TOKEN="",
        GITHUB_APP_ID="123",
        GITHUB_APP_PRIVATE_KEY_FILE=str(key),
        GITHUB_APP_INSTALLATION_ID="99",
    )
    github = load_settings(env).routes["default"].github
    assert github is not None
    assert github.kind == "app"
    assert github.app_id == "123"
    assert github.installation_id == "99"
    assert (
        github.app_private_key is not None
        and "BEGIN PRIVATE KEY" in github.app_private_key
    )


def test_github_app_key_with_literal_newlines() -> None:
    env = dict(
        BASE_ENV,
        GITHUB_TOKEN="",
        GITHUB_APP_ID="123",
        GITHUB_APP_PRIVATE_KEY="-----BEGIN RSA PRIVATE KEY-----\\nabc\\n-----END RSA PRIVATE KEY-----",
    )
    github = load_settings(env).routes["default"].github
    assert github is not None and github.app_private_key is not None
    assert github.app_private_key.count("\n") == 2


def test_secret_values_lists_everything_to_redact() -> None:
    values = load_settings(dict(BASE_ENV)).secret_values()
    assert "current-secret-value" in values
    assert "github_pat_example" in values


ROUTES_YAML = """
database: /tmp/relay-from-yaml.db
routes:
  default:
    repository: example/ios-app
    secret_env: IOS_SECRET
  watch-app:
    repository: example/watch-app
    event_type: watch-release
    secret_file: {secret_file}
    previous_secret_env: WATCH_OLD
    github_token_env: WATCH_TOKEN
    events: [BUILD_UPLOAD_STATE_UPDATED, appStoreVersionAppVersionStateUpdated]
    states: [complete, READY_FOR_DISTRIBUTION]
"""


def write_routes(tmp_path: Path, text: str = ROUTES_YAML) -> Path:
    secret_file = tmp_path / "watch-secret"
    secret_file.write_text("watch-secret-value")
    path = tmp_path / "relay.yml"
    path.write_text(text.format(secret_file=secret_file))
    return path


def test_yaml_describes_several_routes(tmp_path: Path) -> None:
    env = {
        "RELAY_CONFIG": str(write_routes(tmp_path)),
        "IOS_SECRET": "ios-secret-value",
        "WATCH_OLD": "watch-old-value",
        "WATCH_TOKEN": "watch-token",
        "GITHUB_TOKEN": "shared-token",
    }
    settings = load_settings(env)
    assert settings.database == "/tmp/relay-from-yaml.db"
    ios, watch = settings.routes["default"], settings.routes["watch-app"]
    assert ios.secrets == (b"ios-secret-value",)
    assert ios.github is not None and ios.github.token == "shared-token"
    assert ios.events is None
    assert watch.path == "/webhook/watch-app"
    assert watch.secrets == (b"watch-secret-value", b"watch-old-value")
    assert watch.github is not None and watch.github.token == "watch-token"
    assert watch.event_type == "watch-release"
    assert watch.events == frozenset(
        {"buildUploadStateUpdated", "appStoreVersionAppVersionStateUpdated"}
    )
    assert watch.states == frozenset({"COMPLETE", "READY_FOR_DISTRIBUTION"})
    assert watch.accepts("buildUploadStateUpdated", "COMPLETE")
    assert not watch.accepts("buildUploadStateUpdated", "FAILED")
    assert not watch.accepts("webhookPingCreated", None)


def test_relay_database_variable_overrides_yaml(tmp_path: Path) -> None:
    env = {
        "RELAY_CONFIG": str(write_routes(tmp_path)),
        "IOS_SECRET": "ios-secret-value",
        "WATCH_TOKEN": "t",
        "GITHUB_TOKEN": "t",
        "RELAY_DATABASE": "/tmp/other.db",
    }
    assert load_settings(env).database == "/tmp/other.db"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("routes: [a, b]", "'routes' must be a mapping"),
        ("routes: {}", "'routes' must be a mapping"),
        ("- just\n- a list", "must hold a mapping"),
        (
            "routes:\n  a: {repository: o/r, secret_env: S}\nextra: 1",
            "unknown key 'extra'",
        ),
        (
            "routes:\n  'bad name': {repository: o/r, secret_env: S}",
            "route name 'bad name' is invalid",
        ),
        (
            "routes:\n  a: {repository: o/r, secret_env: S, secert: x}",
            "unknown key 'secert'",
        ),
        ("routes:\n  a: {repository: o/r}", "no webhook secret"),
        ("routes:\n  a: {repository: o/r, secret_env: MISSING}", "set MISSING"),
        (
            "routes:\n  a: {repository: nope, secret_env: S}",
            "routes.a.repository 'nope'",
        ),
        (
            "routes:\n  a: {repository: o/r, secret_env: S, events: buildUploadStateUpdated}",
            "must be a list",
        ),
        ("routes:\n  a: [1, 2]", "must be a mapping"),
        ("routes:\n  a: {repository: o/r\n", "not valid YAML at line"),
    ],
    ids=[
        "routes-list",
        "routes-empty",
        "top-list",
        "unknown-top",
        "bad-route-name",
        "typo-key",
        "no-secret-key",
        "secret-env-unset",
        "bad-repository",
        "events-string",
        "route-list",
        "syntax",
    ],
)
def test_invalid_yaml_is_rejected(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "relay.yml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_settings(
            {"RELAY_CONFIG": str(path), "S": "secret-value-1", "GITHUB_TOKEN": "t"}
        )
    assert message in str(caught.value)


def test_missing_yaml_file_names_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="RELAY_CONFIG=.*cannot be read"):
        load_settings({"RELAY_CONFIG": str(tmp_path / "missing.yml")})


def test_route_token_variable_unset_is_error(tmp_path: Path) -> None:
    env = {
        "RELAY_CONFIG": str(write_routes(tmp_path)),
        "IOS_SECRET": "ios-secret-value",
        "GITHUB_TOKEN": "shared-token",
    }
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    assert "routes.watch-app names a GitHub token in WATCH_TOKEN" in str(caught.value)


def test_token_source_is_recorded(tmp_path: Path) -> None:
    env = {
        "RELAY_CONFIG": str(write_routes(tmp_path)),
        "IOS_SECRET": "ios-secret-value",
        "WATCH_TOKEN": "watch-token",
        "GITHUB_TOKEN": "shared-token",
    }
    settings = load_settings(env)
    assert settings.routes["default"].github.source == "GITHUB_TOKEN"  # type: ignore[union-attr]
    assert settings.routes["watch-app"].github.source == "WATCH_TOKEN"  # type: ignore[union-attr]


def test_variable_and_file_both_set_is_error(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("from-file-secret")
    env = dict(BASE_ENV, ASC_WEBHOOK_SECRET_FILE=str(secret))
    with pytest.raises(
        ConfigError, match="both ASC_WEBHOOK_SECRET and ASC_WEBHOOK_SECRET_FILE"
    ):
        load_settings(env)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("states", "[COMPLTE]", "'COMPLTE', which is not a state"),
        (
            "events",
            "[BUILD_UPLOAD_STATE_UPDATE]",
            "'buildUploadStateUpdate', which is not an event type",
        ),
    ],
    ids=["state-typo", "event-typo"],
)
def test_filter_typo_is_rejected(
    tmp_path: Path, key: str, value: str, message: str
) -> None:
    path = tmp_path / "relay.yml"
    path.write_text(
        f"routes:\n  a: {{repository: o/r, secret_env: S, {key}: {value}}}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(
            {"RELAY_CONFIG": str(path), "S": "secret-value-1", "GITHUB_TOKEN": "t"}
        )
    assert message in str(caught.value)
    assert "leave the filter out" in str(caught.value)


@pytest.mark.parametrize("value", ["nan", "inf", "0"])
def test_retry_age_must_be_finite_and_positive(value: str) -> None:
    with pytest.raises(ConfigError, match="positive number of seconds"):
        load_settings(dict(BASE_ENV, RELAY_MAX_RETRY_AGE=value))


def test_yaml_retry_age_boolean_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "relay.yml"
    path.write_text(
        "max_retry_age: yes\nroutes:\n  a: {repository: o/r, secret_env: S}\n"
    )
    with pytest.raises(ConfigError, match="positive number of seconds"):
        load_settings(
            {"RELAY_CONFIG": str(path), "S": "secret-value-1", "GITHUB_TOKEN": "t"}
        )


def test_secret_file_not_utf8_is_config_error(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"\xff\xfe\x00binary")
    env = dict(BASE_ENV, ASC_WEBHOOK_SECRET="", ASC_WEBHOOK_SECRET_FILE=str(secret))
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        load_settings(env)
