"""App Store Connect API key settings, read from fastlane's variable names.

One set of repository secrets then serves both fastlane and ``asc-ci``:

- ``APP_STORE_CONNECT_API_KEY_KEY_ID``: the 10-character key ID.
- ``APP_STORE_CONNECT_API_KEY_ISSUER_ID``: the team's issuer ID. Absent or empty
  means an individual key, which signs with ``sub: "user"`` and no ``iss``.
- ``APP_STORE_CONNECT_API_KEY_KEY``: the ``.p8`` file's content, or
  ``APP_STORE_CONNECT_API_KEY_KEY_FILEPATH``: a path to that file. The content
  wins when both are set.
- ``APP_STORE_CONNECT_API_KEY_IS_KEY_CONTENT_BASE64``: ``true``, ``1`` or
  ``yes`` when the content is the base64 encoding of the whole ``.p8`` file.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ci.errors import ConfigError

logger = logging.getLogger(__name__)

KEY_ID_VAR = "APP_STORE_CONNECT_API_KEY_KEY_ID"
ISSUER_ID_VAR = "APP_STORE_CONNECT_API_KEY_ISSUER_ID"
KEY_VAR = "APP_STORE_CONNECT_API_KEY_KEY"
KEY_FILEPATH_VAR = "APP_STORE_CONNECT_API_KEY_KEY_FILEPATH"
KEY_BASE64_VAR = "APP_STORE_CONNECT_API_KEY_IS_KEY_CONTENT_BASE64"

EXPECTED_KEY_FORMAT = (
    "a PKCS#8 EC P-256 private key, the .p8 file App Store Connect downloads"
)
TRUE_VALUES = frozenset({"true", "1", "yes"})
FALSE_VALUES = frozenset({"", "false", "0", "no"})

# Key IDs shown in App Store Connect are 10 upper-case letters and digits.
KEY_ID_PATTERN = re.compile(r"[A-Z0-9]{10}")
PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z ]+)-----(.*?)-----END \1-----", re.DOTALL)


@dataclass(frozen=True)
class AscCredentials:
    """An App Store Connect API key: its ID, issuer ID and private key.

    ``issuer_id`` is None for an individual key. The private key is left out
    of ``repr`` so the object can appear in logs and tracebacks.
    """

    key_id: str
    issuer_id: str | None
    private_key: ec.EllipticCurvePrivateKey = field(repr=False)

    @property
    def is_individual_key(self) -> bool:
        return self.issuer_id is None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> AscCredentials:
        """Read the key from fastlane's variables (see :func:`from_environ`)."""
        return from_environ(environ)


def from_environ(environ: Mapping[str, str]) -> AscCredentials:
    """Read the key from fastlane's variables; raise ConfigError if one is invalid."""
    key_id = environ.get(KEY_ID_VAR, "").strip().strip("'\"")
    if not key_id:
        raise ConfigError(
            f"{KEY_ID_VAR} is not set: set it to the 10-character key ID shown "
            "in App Store Connect (Users and Access > Integrations)"
        )
    if not KEY_ID_PATTERN.fullmatch(key_id):
        raise ConfigError(
            f"{KEY_ID_VAR} is invalid ({key_id!r}): set it to the 10-character "
            "key ID shown in App Store Connect, such as 2X9R4HXF34"
        )

    issuer_id = environ.get(ISSUER_ID_VAR, "").strip().strip("'\"") or None
    private_key = _private_key_from_environ(environ)
    return AscCredentials(key_id=key_id, issuer_id=issuer_id, private_key=private_key)


def _private_key_from_environ(environ: Mapping[str, str]) -> ec.EllipticCurvePrivateKey:
    content = environ.get(KEY_VAR, "")
    path = environ.get(KEY_FILEPATH_VAR, "").strip()

    if content.strip():
        if path:
            logger.info(
                "%s and %s are both set; using %s", KEY_VAR, KEY_FILEPATH_VAR, KEY_VAR
            )
        is_base64 = _parse_flag(environ, KEY_BASE64_VAR)
        return load_private_key(content, variable=KEY_VAR, is_base64=is_base64)

    if path:
        try:
            data = Path(path).expanduser().read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"{KEY_FILEPATH_VAR} names {path!r}, which cannot be read "
                f"({exc.strerror}): point it at the .p8 file App Store Connect "
                f"downloads, or set {KEY_VAR} to its content"
            ) from None
        return load_private_key(data, variable=KEY_FILEPATH_VAR)

    raise ConfigError(
        f"Neither {KEY_VAR} nor {KEY_FILEPATH_VAR} is set: set {KEY_VAR} to the "
        f"content of the .p8 file App Store Connect downloads, or "
        f"{KEY_FILEPATH_VAR} to its path"
    )


def _parse_flag(environ: Mapping[str, str], name: str) -> bool:
    value = environ.get(name, "").strip().lower()
    if value in TRUE_VALUES:
        return True
    if value in FALSE_VALUES:
        return False
    raise ConfigError(f"{name} is invalid ({value!r}): set it to true or false")


def load_private_key(
    content: str | bytes, *, variable: str, is_base64: bool = False
) -> ec.EllipticCurvePrivateKey:
    """Load a ``.p8`` key from text that went through a CI secret store.

    Tolerates literal ``\\n`` sequences, CRLF line ends, surrounding
    whitespace or quotes, a missing PEM header and footer, and (with
    ``is_base64``) base64 of the whole file. Raises ConfigError naming
    ``variable`` and the expected format, never the content.
    """
    text = content.decode("utf-8", "replace") if isinstance(content, bytes) else content
    text = _clean_text(text)

    if is_base64:
        try:
            decoded = base64.b64decode("".join(text.split()), validate=True)
        except (binascii.Error, ValueError):
            raise _invalid_key_error(
                variable, f"it is not valid base64, but {KEY_BASE64_VAR} is true"
            ) from None
        if not decoded.lstrip().startswith(b"-----BEGIN"):
            return _load_der(decoded, variable)
        text = _clean_text(decoded.decode("utf-8", "replace"))

    return _load_pem(_normalized_pem(text), variable)


def _clean_text(text: str) -> str:
    text = text.strip()
    # A quoted value pasted into a secret keeps its quotes.
    while len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1].strip()
    return text.replace("\\r", "").replace("\\n", "\n").replace("\r\n", "\n").strip()


def _normalized_pem(text: str) -> bytes:
    """Rebuild the PEM block from its base64 body, adding the armour if missing."""
    match = PEM_BLOCK.search(text)
    label, body = (match.group(1), match.group(2)) if match else ("PRIVATE KEY", text)
    body = "".join(body.split())
    lines = "\n".join(textwrap.wrap(body, 64))
    return f"-----BEGIN {label}-----\n{lines}\n-----END {label}-----\n".encode(
        "ascii", "replace"
    )


def _load_pem(pem: bytes, variable: str) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise _invalid_key_error(variable, "it is not a readable private key") from None
    return _require_p256(key, variable)


def _load_der(der: bytes, variable: str) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_der_private_key(der, password=None)
    except (ValueError, TypeError):
        raise _invalid_key_error(variable, "it is not a readable private key") from None
    return _require_p256(key, variable)


def _require_p256(key: object, variable: str) -> ec.EllipticCurvePrivateKey:
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise _invalid_key_error(
            variable, f"it is a {type(key).__name__}, not an EC key"
        )
    if not isinstance(key.curve, ec.SECP256R1):
        raise _invalid_key_error(variable, f"its curve is {key.curve.name}, not P-256")
    return key


def _invalid_key_error(variable: str, reason: str) -> ConfigError:
    return ConfigError(
        f"{variable} does not contain a usable App Store Connect API key "
        f"({reason}): set it to {EXPECTED_KEY_FORMAT}"
    )
