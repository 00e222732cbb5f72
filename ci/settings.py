"""The release settings file (``.github/asc-release.yml``) and its validation.

Secrets never live here: tokens and webhook URLs come from the environment.
Every key, its type and its default are declared once in :data:`SCHEMA`, which
also drives the error messages, so a typo names the key, the bad value and
what is allowed.
"""

from __future__ import annotations

import difflib
import logging
import os
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ci import asc_states
from ci.errors import ConfigError

logger = logging.getLogger(__name__)

DEFAULT_PATH = Path(".github/asc-release.yml")

# Apple's enums live in ci.asc_states; settings list them sorted in messages.
PLATFORMS = tuple(sorted(asc_states.PLATFORMS))
APP_VERSION_STATES = tuple(sorted(asc_states.APP_VERSION_STATES))
EXTERNAL_BETA_STATES = tuple(sorted(asc_states.EXTERNAL_BETA_STATES))

#: Placeholders that every name template may use.
TEMPLATE_FIELDS = ("version", "build", "platform", "app")


@dataclass(frozen=True)
class SubmitSettings:
    """The ``submit_for_review`` section."""

    enabled: bool = True
    # None leaves the choice to the build's ITSAppUsesNonExemptEncryption.
    uses_non_exempt_encryption: bool | None = None
    whats_new: str | None = None
    whats_new_locale: str = "en-US"
    cancel_other_submission: bool = False
    build_wait_timeout: int = 1800
    beta_groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReleaseSettings:
    """The ``release`` section."""

    enabled: bool = True
    merge: bool = True
    merge_from: str = "develop"
    merge_into: str = "master"
    tag: str | None = "v{version}"
    github_release: bool = False
    release_name: str = "{app} {version}"


@dataclass(frozen=True)
class JiraSettings:
    """The ``jira`` section; Jira steps run only when ``project`` is set."""

    project: str | None = None
    version_name: str = "{version}"
    done_transition: str = "Done"
    release_version: bool = True

    @property
    def enabled(self) -> bool:
        return bool(self.project)


@dataclass(frozen=True)
class SlackSettings:
    """The ``slack`` section."""

    channel: str | None = None
    notify_states: tuple[str, ...] = (
        "REJECTED",
        "METADATA_REJECTED",
        "INVALID_BINARY",
        "DEVELOPER_REJECTED",
    )
    beta_notify_states: tuple[str, ...] = ("BETA_APPROVED", "BETA_REJECTED")
    notify_feedback: bool = True
    include_tester_email: bool = False
    crash_log_lines: int = 20
    notify_release: bool = True


@dataclass(frozen=True)
class Settings:
    """All settings of one repository, with defaults for every key."""

    platform: str = "IOS"
    app_name: str | None = None
    submit_for_review: SubmitSettings = field(default_factory=SubmitSettings)
    release: ReleaseSettings = field(default_factory=ReleaseSettings)
    jira: JiraSettings = field(default_factory=JiraSettings)
    slack: SlackSettings = field(default_factory=SlackSettings)
    source: str = "defaults"


@dataclass(frozen=True)
class KeySpec:
    """Validation rule for one settings key: its kind and optional allowed values."""

    # bool, optional_bool, int, str, optional_str, template, optional_template,
    # str_list
    kind: str
    choices: tuple[str, ...] = ()
    minimum: int | None = None


SCHEMA: dict[str, dict[str, KeySpec]] = {
    "": {
        "platform": KeySpec("str", PLATFORMS),
        "app_name": KeySpec("optional_str"),
    },
    "submit_for_review": {
        "enabled": KeySpec("bool"),
        "uses_non_exempt_encryption": KeySpec("optional_bool"),
        "whats_new": KeySpec("optional_str"),
        "whats_new_locale": KeySpec("str"),
        "cancel_other_submission": KeySpec("bool"),
        "build_wait_timeout": KeySpec("int", minimum=0),
        "beta_groups": KeySpec("str_list"),
    },
    "release": {
        "enabled": KeySpec("bool"),
        "merge": KeySpec("bool"),
        "merge_from": KeySpec("str"),
        "merge_into": KeySpec("str"),
        "tag": KeySpec("optional_template"),
        "github_release": KeySpec("bool"),
        "release_name": KeySpec("template"),
    },
    "jira": {
        "project": KeySpec("optional_str"),
        "version_name": KeySpec("template"),
        "done_transition": KeySpec("str"),
        "release_version": KeySpec("bool"),
    },
    "slack": {
        "channel": KeySpec("optional_str"),
        "notify_states": KeySpec("str_list", APP_VERSION_STATES),
        "beta_notify_states": KeySpec("str_list", EXTERNAL_BETA_STATES),
        "notify_feedback": KeySpec("bool"),
        "include_tester_email": KeySpec("bool"),
        "crash_log_lines": KeySpec("int", minimum=0),
        "notify_release": KeySpec("bool"),
    },
}

_SECTION_TYPES: dict[str, type] = {
    "submit_for_review": SubmitSettings,
    "release": ReleaseSettings,
    "jira": JiraSettings,
    "slack": SlackSettings,
}


def default_config_path(environ: Mapping[str, str] | None = None) -> Path:
    """Return ``.github/asc-release.yml`` inside ``$GITHUB_WORKSPACE`` or the cwd."""
    environ = os.environ if environ is None else environ
    workspace = environ.get("GITHUB_WORKSPACE")
    if workspace:
        return Path(workspace) / DEFAULT_PATH
    return DEFAULT_PATH


def load_settings(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read and validate the settings file.

    Without ``path`` the default location is used, and a missing file there
    means all defaults. A ``path`` given explicitly must exist, because a
    mistyped ``--config`` should not silently fall back to defaults.
    """
    explicit = path is not None
    config_path = Path(path) if path is not None else default_config_path(environ)
    try:
        text = config_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if explicit:
            raise ConfigError(
                f"settings file {str(config_path)!r} not found: check the --config "
                "path, or omit --config to use .github/asc-release.yml"
            ) from None
        logger.info("no settings file at %s; using the defaults", config_path)
        return Settings()
    except UnicodeDecodeError:
        raise ConfigError(
            f"settings file {str(config_path)!r} is not UTF-8 text"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"cannot read settings file {str(config_path)!r}: {exc.strerror}"
        ) from None
    return parse_settings(text, source=str(config_path))


def parse_settings(text: str, source: str = "<settings>") -> Settings:
    """Parse YAML text into :class:`Settings`, raising ConfigError on any problem."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(_describe_yaml_error(exc, source)) from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ConfigError(
            f"{source}: the settings file must be a mapping of keys to values, "
            f"got {type(document).__name__} {document!r}"
        )
    return settings_from_mapping(document, source=source)


def settings_from_mapping(document: Mapping[str, Any], source: str) -> Settings:
    """Validate a parsed settings document and build :class:`Settings`."""
    top_spec = SCHEMA[""]
    allowed_top = list(top_spec) + list(_SECTION_TYPES)
    _reject_unknown_keys(document, allowed_top, prefix="", source=source)

    top_values = {
        key: _check_value(key, value, top_spec[key], source)
        for key, value in document.items()
        if key in top_spec
    }

    sections: dict[str, Any] = {}
    for name, section_type in _SECTION_TYPES.items():
        raw = document.get(name)
        if raw is None:
            sections[name] = section_type()
            continue
        if not isinstance(raw, dict):
            raise ConfigError(
                f"{source}: {name} must be a mapping of keys to values, got {raw!r}; "
                f"allowed keys: {', '.join(SCHEMA[name])}"
            )
        spec = SCHEMA[name]
        _reject_unknown_keys(raw, list(spec), prefix=f"{name}.", source=source)
        values = {
            key: _check_value(f"{name}.{key}", value, spec[key], source)
            for key, value in raw.items()
        }
        sections[name] = section_type(**values)

    return Settings(**top_values, **sections, source=source)


def _reject_unknown_keys(
    mapping: Mapping[Any, Any], allowed: list[str], prefix: str, source: str
) -> None:
    for key in mapping:
        if key in allowed:
            continue
        hint = ""
        close = difflib.get_close_matches(str(key), allowed, n=1)
        if close:
            hint = f" (did you mean {prefix + close[0]!r}?)"
        raise ConfigError(
            f"{source}: unknown key {prefix + str(key)!r}{hint}; allowed keys"
            f"{' in ' + prefix.rstrip('.') if prefix else ''}: {', '.join(allowed)}"
        )


def _check_value(name: str, value: Any, spec: KeySpec, source: str) -> Any:
    def invalid(expected: str) -> ConfigError:
        return ConfigError(f"{source}: {name} must be {expected}, got {value!r}")

    kind = spec.kind
    if kind.startswith("optional_") and value is None:
        return None

    if kind in ("bool", "optional_bool"):
        if not isinstance(value, bool):
            raise invalid(
                "true or false" + (" or null" if kind == "optional_bool" else "")
            )
        return value

    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid("a whole number")
        if spec.minimum is not None and value < spec.minimum:
            raise invalid(f"a whole number of at least {spec.minimum}")
        return value

    if kind in ("str", "optional_str", "template", "optional_template"):
        if not isinstance(value, str) or not value.strip():
            optional = " or null" if kind.startswith("optional_") else ""
            raise invalid(f"a non-empty string{optional}")
        if spec.choices and value not in spec.choices:
            raise invalid(f"one of {', '.join(spec.choices)}")
        if kind.endswith("template"):
            _check_template(name, value, source)
        return value

    if kind == "str_list":
        if not isinstance(value, list) or not all(
            isinstance(item, str) and item for item in value
        ):
            raise invalid("a list of strings")
        unknown = [item for item in value if spec.choices and item not in spec.choices]
        if unknown:
            raise ConfigError(
                f"{source}: {name} contains {unknown[0]!r}, which is not a known "
                f"state; allowed: {', '.join(spec.choices)}"
            )
        return tuple(value)

    raise AssertionError(f"unknown key kind {kind!r} for {name}")


def _check_template(name: str, value: str, source: str) -> None:
    try:
        fields = [
            parsed[1]
            for parsed in string.Formatter().parse(value)
            if parsed[1] is not None
        ]
    except ValueError as exc:
        raise ConfigError(
            f"{source}: {name} is not a valid template ({exc}), got {value!r}; "
            "write placeholders as {version} and a literal brace as {{ or }}"
        ) from None
    for placeholder in fields:
        if placeholder not in TEMPLATE_FIELDS:
            raise ConfigError(
                f"{source}: {name} uses the unknown placeholder {{{placeholder}}} "
                f"in {value!r}; allowed placeholders: "
                f"{', '.join('{' + item + '}' for item in TEMPLATE_FIELDS)}"
            )


def render_template(template: str, **values: str) -> str:
    """Fill a validated name template; missing values become empty strings."""
    filled = {key: values.get(key, "") for key in TEMPLATE_FIELDS}
    return template.format(**filled)


def _describe_yaml_error(exc: yaml.YAMLError, source: str) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is not None:
        return (
            f"{source}: invalid YAML at line {mark.line + 1}, "
            f"column {mark.column + 1}: {problem}; fix the syntax there"
        )
    return f"{source}: invalid YAML: {problem}"
