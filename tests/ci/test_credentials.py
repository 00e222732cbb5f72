from __future__ import annotations

import base64
import logging

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ci.credentials import EXPECTED_KEY_FORMAT, AscCredentials, from_environ
from ci.errors import ConfigError
from tests.ci.conftest import ISSUER_ID, KEY_ID


def _body_lines(pem: str) -> list[str]:
    return [line for line in pem.strip().splitlines() if not line.startswith("-----")]


def _variants(pem: str) -> dict[str, dict[str, str]]:
    body = "".join(_body_lines(pem))
    return {
        "plain": {"APP_STORE_CONNECT_API_KEY_KEY": pem},
        "literal backslash n": {
            "APP_STORE_CONNECT_API_KEY_KEY": pem.replace("\n", "\\n")
        },
        "crlf": {"APP_STORE_CONNECT_API_KEY_KEY": pem.replace("\n", "\r\n")},
        "surrounding whitespace": {
            "APP_STORE_CONNECT_API_KEY_KEY": f"\n\t  {pem}  \n\n"
        },
        "double quoted": {"APP_STORE_CONNECT_API_KEY_KEY": f'"{pem}"'},
        "single quoted literal n": {
            "APP_STORE_CONNECT_API_KEY_KEY": "'" + pem.replace("\n", "\\n") + "'"
        },
        "no header or footer": {"APP_STORE_CONNECT_API_KEY_KEY": body},
        "no header, wrapped": {
            "APP_STORE_CONNECT_API_KEY_KEY": "\n".join(_body_lines(pem))
        },
        "one line with spaces": {
            "APP_STORE_CONNECT_API_KEY_KEY": pem.replace("\n", " ")
        },
        "base64 true": {
            "APP_STORE_CONNECT_API_KEY_KEY": base64.b64encode(pem.encode()).decode(),
            "APP_STORE_CONNECT_API_KEY_IS_KEY_CONTENT_BASE64": "true",
        },
        "base64 1 with newline": {
            "APP_STORE_CONNECT_API_KEY_KEY": base64.b64encode(pem.encode()).decode()
            + "\n",
            "APP_STORE_CONNECT_API_KEY_IS_KEY_CONTENT_BASE64": "1",
        },
        "base64 yes": {
            "APP_STORE_CONNECT_API_KEY_KEY": base64.b64encode(pem.encode()).decode(),
            "APP_STORE_CONNECT_API_KEY_IS_KEY_CONTENT_BASE64": "YES",
        },
        "base64 of crlf file": {
            "APP_STORE_CONNECT_API_KEY_KEY": base64.b64encode(
                pem.replace("\n", "\r\n").encode()
            ).decode(),
            "APP_STORE_CONNECT_API_KEY_IS_KEY_CONTENT_BASE64": "true",
        },
    }


VARIANT_NAMES = [
    "plain",
    "literal backslash n",
    "crlf",
    "surrounding whitespace",
    "double quoted",
    "single quoted literal n",
    "no header or footer",
    "no header, wrapped",
    "one line with spaces",
    "base64 true",
    "base64 1 with newline",
    "base64 yes",
    "base64 of crlf file",
]


def _public_numbers(key: ec.EllipticCurvePrivateKey) -> ec.EllipticCurvePublicNumbers:
    return key.public_key().public_numbers()


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_key_content_variant_loads(
    variant: str, private_key: ec.EllipticCurvePrivateKey, private_key_pem: str
) -> None:
    environ = {"APP_STORE_CONNECT_API_KEY_KEY_ID": KEY_ID}
    environ.update(_variants(private_key_pem)[variant])

    loaded = from_environ(environ)

    assert _public_numbers(loaded.private_key) == _public_numbers(private_key)


def test_key_sec1_pem_loads(private_key: ec.EllipticCurvePrivateKey) -> None:
    sec1 = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    environ = {
        "APP_STORE_CONNECT_API_KEY_KEY_ID": KEY_ID,
        "APP_STORE_CONNECT_API_KEY_KEY": sec1.replace("\n", "\\n"),
    }

    loaded = from_environ(environ)

    assert _public_numbers(loaded.private_key) == _public_numbers(private_key)


def test_key_base64_of_der_loads(private_key: ec.EllipticCurvePrivateKey) -> None:
    der = private_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    environ = {
        "APP_STORE_CONNECT_API_KEY_KEY_ID": KEY_ID,
        "APP_STORE_CONNECT_API_KEY_KEY": base64.b64encode(der).decode(),
        "APP_STORE_CONNECT_API_KEY_IS_KEY_CONTENT_BASE64": "true",
    }

    loaded = from_environ(environ)

    assert _public_numbers(loaded.private_key) == _public_numbers(private_key)


def test_key_filepath_loads(
    tmp_path, private_key: ec.EllipticCurvePrivateKey, private_key_pem: str
) -> None:
    path = tmp_path / "AuthKey_ABC123DEF4.p8"
    path.write_text(private_key_pem.replace("\n", "\r\n"))
    environ = {
        "APP_STORE_CONNECT_API_KEY_KEY_ID": KEY_ID,
        "APP_STORE_CONNECT_API_KEY_KEY_FILEPATH": str(path),
    }

    loaded = from_environ(environ)

    assert _public_numbers(loaded.private_key) == _public_numbers(private_key)


def test_key_content_wins_over_filepath(
    tmp_path, private_key: ec.EllipticCurvePrivateKey, private_key_pem: str
) -> None:
    environ = {
        "APP_STORE_CONNECT_API_KEY_KEY_ID": KEY_ID,
        "APP_STORE_CONNECT_API_KEY_KEY": private_key_pem,
        "APP_STORE_CONNECT_API_KEY_KEY_FILEPATH": str(tmp_path / "missing.p8"),
    }

    loaded = from_environ(environ)

    assert _public_numbers(loaded.private_key) == _public_numbers(private_key)


@pytest.mark.parametrize(
    ("issuer", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        (ISSUER_ID, ISSUER_ID),
        (f"  {ISSUER_ID}\n", ISSUER_ID),
    ],
)
def test_issuer_id_empty_means_individual(
    issuer: str | None, expected: str | None, private_key_pem: str
) -> None:
    environ = {
        "APP_STORE_CONNECT_API_KEY_KEY_ID": KEY_ID,
        "APP_STORE_CONNECT_API_KEY_KEY": private_key_pem,
    }
    if issuer is not None:
        environ["APP_STORE_CONNECT_API_KEY_ISSUER_ID"] = issuer

    loaded = AscCredentials.from_environ(environ)

    assert loaded.issuer_id == expected
    assert loaded.is_individual_key == (expected is None)


@pytest.mark.parametrize("key_id", [None, "", "  "])
def test_key_id_missing_names_format(key_id: str | None, private_key_pem: str) -> None:
    environ = {"APP_STORE_CONNECT_API_KEY_KEY": private_key_pem}
    if key_id is not None:
        environ["APP_STORE_CONNECT_API_KEY_KEY_ID"] = key_id

    with pytest.raises(ConfigError) as caught:
        from_environ(environ)

    message = str(caught.value)
    assert "APP_STORE_CONNECT_API_KEY_KEY_ID is not set" in message
    assert "10-character key ID shown in App Store Connect" in message


@pytest.mark.parametrize(
    "key_id", ["ABC123", "abc123def4", "ABC123DEF45", "ABC 123DEF"]
)
def test_key_id_invalid_rejected(key_id: str, private_key_pem: str) -> None:
    environ = {
        "APP_STORE_CONNECT_API_KEY_KEY_ID": key_id,
        "APP_STORE_CONNECT_API_KEY_KEY": private_key_pem,
    }

    with pytest.raises(ConfigError, match="10-character key ID"):
        from_environ(environ)


def test_key_missing_names_both_variables() -> None:
    with pytest.raises(ConfigError) as caught:
        from_environ({"APP_STORE_CONNECT_API_KEY_KEY_ID": KEY_ID})

    message = str(caught.value)
    assert "APP_STORE_CONNECT_API_KEY_KEY " in message
    assert "APP_STORE_CONNECT_API_KEY_KEY_FILEPATH" in message


def test_key_filepath_unreadable_names_path(tmp_path) -> None:
    path = tmp_path / "absent.p8"
    environ = {
        "APP_STORE_CONNECT_API_KEY_KEY_ID": KEY_ID,
        "APP_STORE_CONNECT_API_KEY_KEY_FILEPATH": str(path),
    }

    with pytest.raises(ConfigError) as caught:
        from_environ(environ)

    assert str(path) in str(caught.value)
    assert "APP_STORE_CONNECT_API_KEY_KEY_FILEPATH" in str(caught.value)


def _rsa_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _p384_pem() -> str:
    key = ec.generate_private_key(ec.SECP384R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@pytest.mark.parametrize(
    ("content", "flag", "reason"),
    [
        ("MIGTAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBHkwdwIBAQQg" * 3, "", "not a readable"),
        (
            "-----BEGIN PRIVATE KEY-----\nnot base64!!\n-----END PRIVATE KEY-----",
            "",
            "",
        ),
        ("%%% not base64 %%%", "true", "not valid base64"),
        (base64.b64encode(b"garbage bytes").decode(), "true", "not a readable"),
        ("rsa", "", "not an EC key"),
        ("p384", "", "not P-256"),
    ],
    ids=["truncated", "bad body", "bad base64", "base64 garbage", "rsa", "p384"],
)
def test_key_unusable_names_variable_not_key(
    content: str, flag: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    if content == "rsa":
        content = _rsa_pem()
    elif content == "p384":
        content = _p384_pem()
    environ = {
        "APP_STORE_CONNECT_API_KEY_KEY_ID": KEY_ID,
        "APP_STORE_CONNECT_API_KEY_KEY": content,
        "APP_STORE_CONNECT_API_KEY_IS_KEY_CONTENT_BASE64": flag,
    }
    caplog.set_level(logging.DEBUG)

    with pytest.raises(ConfigError) as caught:
        from_environ(environ)

    message = str(caught.value)
    assert message.startswith("APP_STORE_CONNECT_API_KEY_KEY does not contain")
    assert EXPECTED_KEY_FORMAT in message
    assert reason in message
    assert caught.value.__cause__ is None
    for line in _body_lines(content)[:3]:
        chunk = line.strip()[:24]
        if len(chunk) >= 16:
            assert chunk not in message
            assert chunk not in caplog.text


@pytest.mark.parametrize("flag", ["maybe", "2", "on please"])
def test_base64_flag_invalid_rejected(flag: str, private_key_pem: str) -> None:
    environ = {
        "APP_STORE_CONNECT_API_KEY_KEY_ID": KEY_ID,
        "APP_STORE_CONNECT_API_KEY_KEY": private_key_pem,
        "APP_STORE_CONNECT_API_KEY_IS_KEY_CONTENT_BASE64": flag,
    }

    with pytest.raises(ConfigError, match="APP_STORE_CONNECT_API_KEY_IS_KEY_CONTENT"):
        from_environ(environ)


def test_credentials_repr_hides_key(private_key_pem: str) -> None:
    loaded = from_environ(
        {
            "APP_STORE_CONNECT_API_KEY_KEY_ID": KEY_ID,
            "APP_STORE_CONNECT_API_KEY_KEY": private_key_pem,
        }
    )

    assert "private_key" not in repr(loaded)
    assert KEY_ID in repr(loaded)
