"""Masking of secret values in everything ``asc-ci`` prints, logs or writes."""

from __future__ import annotations

import logging
from collections.abc import Mapping

#: Environment variables whose values are masked in every line asc-ci writes.
SECRET_VARIABLES = (
    "GITHUB_TOKEN",
    "SLACK_WEBHOOK_URL",
    "SLACK_BOT_TOKEN",
    "JIRA_API_TOKEN",
    "APP_STORE_CONNECT_API_KEY_KEY",
)
#: Shorter values are not masked, because replacing them would garble text.
MIN_SECRET_LENGTH = 8


class Redactor:
    """Replaces known secret values with ``***`` in text."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        values = []
        for name in SECRET_VARIABLES:
            value = environ.get(name, "").strip()
            if len(value) >= MIN_SECRET_LENGTH:
                values.append(value)
                # A PEM key also appears line by line in some messages.
                values.extend(
                    line.strip()
                    for line in value.splitlines()
                    if len(line.strip()) >= 16 and not line.startswith("-----")
                )
        self.values = sorted(set(values), key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for value in self.values:
            text = text.replace(value, "***")
        return text


class RedactingFilter(logging.Filter):
    """Masks secrets in log records after their arguments are merged."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redactor(record.getMessage())
        record.args = None
        return True
