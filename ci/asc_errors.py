"""App Store Connect error bodies and the errors whose fix differs from the rest.

Apple's body is ``{"errors": [{"code", "detail", "source", ...}, ...]}``. Every
entry is kept, because the code that explains a failure is not always the first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import requests

from ci.credentials import ISSUER_ID_VAR, KEY_ID_VAR
from ci.errors import AutomationError
from ci.http import AuthError

TOKEN_HINT = (
    "App Store Connect rejected a freshly signed token: check that "
    f"{KEY_ID_VAR} is the ID of this key, that {ISSUER_ID_VAR} is your team's "
    "issuer ID (left empty only for an individual key), that the key has not "
    "been revoked, and that the runner's clock is correct, because clock skew "
    "makes the token's iat and exp invalid"
)
AGREEMENTS_HINT = (
    "The Account Holder must accept the latest agreements in App Store Connect "
    "(Business), then run this again"
)
FORBIDDEN_HINT = (
    "The API key's role does not allow this request: use a key with the Admin "
    "or App Manager role, or grant the key access to this app in Users and Access"
)


class AgreementsMissingError(AuthError):
    """403: a required agreement is missing or expired, so Apple blocks the call."""


class ForbiddenError(AuthError):
    """403: the API key's role lacks permission for the request."""


class InvalidResourceUrlError(AutomationError, ValueError):
    """A URL or path does not name an App Store Connect API resource."""


def _format_entry(entry: Mapping[str, Any]) -> str:
    parts = [str(entry.get("code") or entry.get("status") or "ERROR")]
    text = entry.get("detail") or entry.get("title")
    if text:
        parts.append(str(text))
    source = entry.get("source")
    if isinstance(source, Mapping):
        where = source.get("pointer") or source.get("parameter")
        if where:
            parts.append(f"(at {where})")
    return " ".join(parts)


def parse_error_response(
    response: requests.Response,
) -> tuple[str, list[dict[str, Any]]]:
    """Return a summary of every error entry and the entries themselves.

    Entries nested under ``meta.associatedErrors`` are appended after their
    parent, because the code that explains a 409 is often one of them or not
    the first entry.
    """
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip().replace("\n", " ")
        return (text[:300] or response.reason or ""), []

    raw = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(raw, list) or not raw:
        return str(body)[:300], []

    entries: list[dict[str, Any]] = []
    for entry in raw:
        if not isinstance(entry, dict):
            continue
        entries.append(entry)
        meta = entry.get("meta")
        associated = meta.get("associatedErrors") if isinstance(meta, dict) else None
        if isinstance(associated, dict):
            for nested in associated.values():
                if isinstance(nested, list):
                    entries.extend(item for item in nested if isinstance(item, dict))
    return "; ".join(_format_entry(entry) for entry in entries), entries
