"""Log set-up for the relay's processes: one line per record, text or JSON.

The ids passed in ``extra`` (delivery, event id, type, route, request uuid)
end every line. A filter replaces any configured secret that reaches a
message with ``[redacted]``, as a last guard behind code that never logs one.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime

CONTEXT_FIELDS = ("delivery", "event_id", "event_type", "route", "request_uuid")
REDACTED = "[redacted]"


class RedactingFilter(logging.Filter):
    """Replace known secret values in formatted messages."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # Short values would redact ordinary words; real secrets are long.
        self.secrets = sorted(
            {s for s in secrets if len(s) >= 8}, key=len, reverse=True
        )

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        cleaned = message
        for secret in self.secrets:
            cleaned = cleaned.replace(secret, REDACTED)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class SignatureFilter(logging.Filter):
    """Mask signature headers that another library echoes into a log message.

    gunicorn logs a malformed header line verbatim, which can carry an
    ``x-apple-signature`` value; everything after that header name is masked.
    """

    HEADER = re.compile(r"(?i)(x-apple-signature).*", re.DOTALL)
    DIGEST = re.compile(r"(?i)(hmacsha256\s*=\s*)\S+")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = self.DIGEST.sub(rf"\1{REDACTED}", message)
        cleaned = self.HEADER.sub(rf"\1 {REDACTED}", cleaned)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, UTC).isoformat(
            timespec="milliseconds"
        )
        line = f"{moment.replace('+00:00', 'Z')} {record.levelname} {record.name}: "
        line += one_line(record.getMessage())
        context = [
            f"{name}={one_line(str(getattr(record, name)))}"
            for name in CONTEXT_FIELDS
            if getattr(record, name, None) is not None
        ]
        if context:
            line += " [" + " ".join(context) + "]"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def one_line(text: str) -> str:
    """Escape control characters, so text from a delivery cannot forge a log line
    or send escape sequences to a terminal."""
    text = text.replace("\\", "\\\\")
    return _CONTROL.sub(
        lambda match: _ESCAPES.get(match[0], f"\\x{ord(match[0]):02x}"), text
    )


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(
    log_format: str = "text", *, level: int = logging.INFO, secrets: Iterable[str] = ()
) -> None:
    """Send the relay's logs to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(RedactingFilter(secrets))
    handler.addFilter(SignatureFilter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
