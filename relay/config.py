"""Relay settings from the environment and an optional YAML file of routes.

With no ``RELAY_CONFIG`` the environment describes the single default route
(``POST /webhook``). A YAML file describes one or more named routes, one per
app, each with its own secrets, repository, event type and event filter.
Secret values themselves always come from the environment or from files,
never from the YAML text.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from relay.events import KNOWN_EVENT_TYPES, KNOWN_STATES

DEFAULT_ROUTE = "default"
DEFAULT_EVENT_TYPE = "asc-webhook"
DEFAULT_GITHUB_API_URL = "https://api.github.com"
DEFAULT_DATABASE = "relay.db"
#: Bodies above this size get a 413 response without being read.
MAX_BODY_BYTES = 1024 * 1024
#: A delivery still failing this long after receipt is marked failed.
DEFAULT_MAX_RETRY_AGE = 24 * 3600.0

ROUTE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
REPOSITORY = re.compile(r"^[A-Za-z0-9-]{1,39}/[A-Za-z0-9._-]{1,100}$")
ROUTE_KEYS = frozenset(
    {
        "repository",
        "event_type",
        "events",
        "states",
        "secret_env",
        "secret_file",
        "previous_secret_env",
        "previous_secret_file",
        "github_token_env",
        "github_token_file",
        "github_app_id",
        "github_app_private_key_env",
        "github_app_private_key_file",
        "github_app_installation_id",
    }
)
TOP_KEYS = frozenset({"database", "github_api_url", "max_retry_age", "routes"})


class ConfigError(Exception):
    """A setting is missing or invalid; the message names it and the fix."""


@dataclass(frozen=True)
class GitHubAuth:
    """Credentials a route uses for GitHub: a token, or a GitHub App."""

    token: str | None = field(default=None, repr=False)
    app_id: str | None = None
    app_private_key: str | None = field(default=None, repr=False)
    installation_id: str | None = None
    #: Where the token or private key came from, for ``asc-relay check``.
    source: str = ""

    @property
    def kind(self) -> str:
        return "token" if self.token else "app"


@dataclass(frozen=True)
class Route:
    """One webhook endpoint and the repository its events are dispatched to."""

    name: str
    secrets: tuple[bytes, ...] = field(repr=False)
    repository: str
    event_type: str
    github: GitHubAuth | None
    events: frozenset[str] | None = None
    states: frozenset[str] | None = None

    @property
    def path(self) -> str:
        return "/webhook" if self.name == DEFAULT_ROUTE else f"/webhook/{self.name}"

    def accepts(self, event_type: str, new_state: str | None) -> bool:
        """Return whether the route's filter lets an event through."""
        if self.events is not None and event_type not in self.events:
            return False
        if self.states is not None and new_state is not None:
            return new_state in self.states
        return True


@dataclass(frozen=True)
class Settings:
    """Everything the relay reads at start-up."""

    routes: dict[str, Route]
    database: str
    github_api_url: str = DEFAULT_GITHUB_API_URL
    dry_run: bool = False
    max_body_bytes: int = MAX_BODY_BYTES
    max_retry_age: float = DEFAULT_MAX_RETRY_AGE
    log_format: str = "text"

    def secret_values(self) -> list[str]:
        """Return every configured secret, for the log redaction filter."""
        values: list[str] = []
        for route in self.routes.values():
            values += [secret.decode("utf-8", "replace") for secret in route.secrets]
            if route.github is not None:
                values += [
                    v for v in (route.github.token, route.github.app_private_key) if v
                ]
        return values


def load_settings(
    environ: Mapping[str, str] | None = None, *, dry_run: bool = False
) -> Settings:
    """Read the settings, raising :class:`ConfigError` for anything unusable."""
    env = os.environ if environ is None else environ
    dry_run = dry_run or _flag(env, "RELAY_DRY_RUN")
    config_path = env.get("RELAY_CONFIG", "").strip()
    document = _read_yaml(config_path) if config_path else {}

    unknown = sorted(set(document) - TOP_KEYS)
    if unknown:
        raise ConfigError(
            f"{config_path}: unknown key {unknown[0]!r}; allowed keys: {', '.join(sorted(TOP_KEYS))}"
        )
    github_api_url = (
        env.get("GITHUB_API_URL")
        or document.get("github_api_url")
        or DEFAULT_GITHUB_API_URL
    )
    if not re.match(r"^https?://[^\s/]+", str(github_api_url)):
        raise ConfigError(
            f"GITHUB_API_URL {github_api_url!r} is not an http(s) URL: "
            "leave it unset for github.com or set it to https://HOST/api/v3 for GitHub Enterprise Server"
        )

    if config_path:
        routes = _routes_from_yaml(document.get("routes"), env, config_path, dry_run)
    else:
        routes = {DEFAULT_ROUTE: _route_from_env(env, dry_run)}

    return Settings(
        routes=routes,
        database=env.get("RELAY_DATABASE")
        or str(document.get("database") or DEFAULT_DATABASE),
        github_api_url=str(github_api_url).rstrip("/"),
        dry_run=dry_run,
        max_retry_age=_seconds(env, document, "RELAY_MAX_RETRY_AGE", "max_retry_age"),
        log_format="json"
        if env.get("RELAY_LOG_FORMAT", "").lower() == "json"
        else "text",
    )


def _route_from_env(env: Mapping[str, str], dry_run: bool) -> Route:
    secrets = _secrets(
        env,
        [("ASC_WEBHOOK_SECRET", "ASC_WEBHOOK_SECRET_FILE")],
        [("ASC_WEBHOOK_SECRET_PREVIOUS", "ASC_WEBHOOK_SECRET_PREVIOUS_FILE")],
        where="the environment",
        from_yaml=False,
    )
    repository = _repository(env.get("GITHUB_REPOSITORY", ""), "GITHUB_REPOSITORY")
    event_type = _event_type(
        env.get("RELAY_EVENT_TYPE") or DEFAULT_EVENT_TYPE, "RELAY_EVENT_TYPE"
    )
    github = _github_auth(
        env,
        token=("GITHUB_TOKEN", "GITHUB_TOKEN_FILE"),
        app_id=env.get("GITHUB_APP_ID"),
        key=("GITHUB_APP_PRIVATE_KEY", "GITHUB_APP_PRIVATE_KEY_FILE"),
        installation_id=env.get("GITHUB_APP_INSTALLATION_ID"),
        dry_run=dry_run,
        where="the environment",
    )
    return Route(DEFAULT_ROUTE, secrets, repository, event_type, github)


def _routes_from_yaml(
    raw: Any, env: Mapping[str, str], path: str, dry_run: bool
) -> dict[str, Route]:
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(
            f"{path}: 'routes' must be a mapping of route names to settings"
        )
    routes: dict[str, Route] = {}
    for name, spec in raw.items():
        name = str(name)
        where = f"{path}: routes.{name}"
        if not ROUTE_NAME.match(name):
            raise ConfigError(
                f"{where}: route name {name!r} is invalid: use letters, digits, '.', '_' "
                "or '-', at most 64 characters"
            )
        if not isinstance(spec, dict):
            raise ConfigError(f"{where} must be a mapping")
        unknown = sorted(set(spec) - ROUTE_KEYS)
        if unknown:
            raise ConfigError(
                f"{where}: unknown key {unknown[0]!r}; allowed keys: {', '.join(sorted(ROUTE_KEYS))}"
            )
        secrets = _secrets(
            env,
            [_env_file_pair(spec, "secret")],
            [_env_file_pair(spec, "previous_secret")],
            where=where,
            from_yaml=True,
        )
        github = _github_auth(
            env,
            token=_env_file_pair(spec, "github_token"),
            app_id=_optional_str(spec.get("github_app_id")),
            key=_env_file_pair(spec, "github_app_private_key"),
            installation_id=_optional_str(spec.get("github_app_installation_id")),
            dry_run=dry_run,
            where=where,
            from_yaml=True,
        )
        routes[name] = Route(
            name=name,
            secrets=secrets,
            repository=_repository(
                str(spec.get("repository", "")), f"{where}.repository"
            ),
            event_type=_event_type(
                str(spec.get("event_type", DEFAULT_EVENT_TYPE)), f"{where}.event_type"
            ),
            github=github,
            events=_name_set(
                spec.get("events"),
                f"{where}.events",
                _event_name,
                KNOWN_EVENT_TYPES,
                "an event type",
            ),
            states=_name_set(
                spec.get("states"),
                f"{where}.states",
                str.upper,
                KNOWN_STATES,
                "a state",
            ),
        )
    return routes


def _env_file_pair(spec: dict[str, Any], prefix: str) -> tuple[str | None, str | None]:
    """Turn ``<prefix>_env``/``<prefix>_file`` keys into a pair of sources."""
    return _optional_str(spec.get(f"{prefix}_env")), _optional_str(
        spec.get(f"{prefix}_file")
    )


def _secrets(
    env: Mapping[str, str],
    current: list[tuple[str | None, str | None]],
    previous: list[tuple[str | None, str | None]],
    *,
    where: str,
    from_yaml: bool,
) -> tuple[bytes, ...]:
    values: list[bytes] = []
    for env_name, file_path in current + previous:
        value = _read_value(env, env_name, file_path, from_yaml=from_yaml)
        if value:
            values.append(value.encode())
    first_env, first_file = current[0]
    if not _read_value(env, first_env, first_file, from_yaml=from_yaml):
        names = (
            " or ".join(n for n in (first_env, first_file) if n)
            or "secret_env or secret_file"
        )
        raise ConfigError(
            f"no webhook secret in {where}: set {names} to the secret entered when the "
            "webhook was created in App Store Connect"
        )
    return tuple(values)


def _read_value(
    env: Mapping[str, str],
    env_name: str | None,
    file_name: str | None,
    *,
    from_yaml: bool,
) -> str | None:
    """Read a secret from an environment variable or from a file."""
    return _read_source(env, env_name, file_name, from_yaml=from_yaml)[0]


def _read_source(
    env: Mapping[str, str],
    env_name: str | None,
    file_name: str | None,
    *,
    from_yaml: bool,
) -> tuple[str | None, str | None]:
    """Return a secret and a label naming where it came from.

    In environment mode ``file_name`` is the name of a variable holding a
    path (``ASC_WEBHOOK_SECRET_FILE``); in YAML mode it is the path itself.
    Setting both the variable and the file is an error, because it is not
    obvious which one wins.
    """
    direct = env.get(env_name, "").strip() if env_name else ""
    path = ""
    if file_name:
        path = file_name if from_yaml else env.get(file_name, "").strip()
    if direct and path:
        file_label = path if from_yaml else file_name
        raise ConfigError(
            f"both {env_name} and {file_label} are set: keep only one of them"
        )
    if direct:
        return direct, env_name
    if not path:
        return None, None
    label = path if from_yaml else f"{file_name}={path}"
    try:
        return Path(path).read_text(encoding="utf-8").strip() or None, label
    except UnicodeDecodeError:
        raise ConfigError(
            f"{label} is not UTF-8 text: store the secret as plain text"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"cannot read {label}: {exc.strerror or exc}; check the path and that the "
            "relay's user can read it"
        ) from None


def _github_auth(
    env: Mapping[str, str],
    *,
    token: tuple[str | None, str | None],
    app_id: str | None,
    key: tuple[str | None, str | None],
    installation_id: str | None,
    dry_run: bool,
    where: str,
    from_yaml: bool = False,
) -> GitHubAuth | None:
    token_value, token_source = _read_source(env, *token, from_yaml=from_yaml)
    key_value, key_source = _read_source(env, *key, from_yaml=from_yaml)
    named = any(token) or app_id or any(key)
    if from_yaml and not named:
        # A route that names no credentials of its own uses the relay-wide ones.
        return _github_auth(
            env,
            token=("GITHUB_TOKEN", "GITHUB_TOKEN_FILE"),
            app_id=env.get("GITHUB_APP_ID"),
            key=("GITHUB_APP_PRIVATE_KEY", "GITHUB_APP_PRIVATE_KEY_FILE"),
            installation_id=env.get("GITHUB_APP_INSTALLATION_ID"),
            dry_run=dry_run,
            where=where,
        )
    if from_yaml and any(token) and not token_value:
        names = " or ".join(name for name in token if name)
        raise ConfigError(
            f"{where} names a GitHub token in {names}, but it is empty or unset: set it, "
            "or remove github_token_env/github_token_file to use GITHUB_TOKEN"
        )
    if token_value:
        return GitHubAuth(token=token_value, source=token_source or "")
    if app_id:
        if not app_id.strip().isdigit():
            raise ConfigError(
                f"GitHub App id {app_id!r} in {where} is not a number: use the App ID "
                "shown on the app's settings page"
            )
        if not key_value:
            raise ConfigError(
                f"GitHub App {app_id} in {where} has no private key: set "
                "GITHUB_APP_PRIVATE_KEY (PEM text) or GITHUB_APP_PRIVATE_KEY_FILE (its path)"
            )
        if installation_id and not installation_id.strip().isdigit():
            raise ConfigError(
                f"GitHub App installation id {installation_id!r} in {where} is not a number"
            )
        return GitHubAuth(
            app_id=app_id.strip(),
            app_private_key=key_value.replace("\\n", "\n"),
            installation_id=installation_id.strip() if installation_id else None,
            source=key_source or "",
        )
    if dry_run:
        return None
    raise ConfigError(
        f"no GitHub credentials in {where}: set GITHUB_TOKEN (a fine-grained token with "
        "Contents: read and write on the repository) or GITHUB_APP_ID with "
        "GITHUB_APP_PRIVATE_KEY; or start with --dry-run to record without dispatching"
    )


def _repository(value: str, name: str) -> str:
    value = value.strip()
    if not value:
        raise ConfigError(
            f"{name} is not set: set it to the target repository as OWNER/NAME"
        )
    if not REPOSITORY.match(value):
        raise ConfigError(f"{name} {value!r} is not a repository name: use OWNER/NAME")
    return value


def _event_type(value: str, name: str) -> str:
    if not 1 <= len(value) <= 100:
        raise ConfigError(
            f"{name} {value[:120]!r} has {len(value)} characters: GitHub accepts an "
            "event_type of 1 to 100 characters"
        )
    return value


def _event_name(value: str) -> str:
    """Accept both spellings of an event: ``BUILD_UPLOAD_STATE_UPDATED`` or
    ``buildUploadStateUpdated``."""
    if "_" in value or value.isupper():
        head, *rest = value.lower().split("_")
        return head + "".join(part.capitalize() for part in rest)
    return value


def _name_set(
    raw: Any, name: str, normalise: Any, known: frozenset[str], kind: str
) -> frozenset[str] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(
        isinstance(item, str) and item for item in raw
    ):
        raise ConfigError(f"{name} must be a list of names, got {raw!r}")
    names = frozenset(normalise(item.strip()) for item in raw)
    unknown = sorted(names - known)
    if unknown:
        # A misspelt name would silently filter out every matching delivery.
        raise ConfigError(
            f"{name} contains {unknown[0]!r}, which is not {kind} App Store Connect "
            f"sends; known: {', '.join(sorted(known))}. If Apple added it after this "
            "release, leave the filter out until the relay is upgraded"
        )
    return names


def _read_yaml(path: str) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"RELAY_CONFIG={path} is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(
            f"RELAY_CONFIG={path} cannot be read: {exc.strerror or exc}"
        ) from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(
            f"{path} is not valid YAML{where}: {getattr(exc, 'problem', exc)}"
        ) from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ConfigError(f"{path} must hold a mapping with a 'routes' key")
    return document


def _seconds(
    env: Mapping[str, str], document: dict[str, Any], env_name: str, key: str
) -> float:
    raw = env.get(env_name) or document.get(key)
    if raw in (None, ""):
        return DEFAULT_MAX_RETRY_AGE
    value = -1.0
    if not isinstance(raw, bool):
        try:
            value = float(raw)
        except (TypeError, ValueError):
            pass
    if not (value > 0 and math.isfinite(value)):
        raise ConfigError(
            f"{env_name} (or {key}) {raw!r} is not a positive number of seconds"
        )
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _optional_str(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None
