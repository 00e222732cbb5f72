from __future__ import annotations

import hashlib
import hmac

import pytest

from relay.signatures import SignatureError, parse_signature, sign, verify

APPLE_SECRET = b"This is my secret"
APPLE_BODY = b"Hello, World!"
APPLE_DIGEST = "7f062172b01cb00b53ca068614674a3d982a34062a0f5d37687d5e3377e54657"


def test_sign_matches_apple_published_vector() -> None:
    assert sign(APPLE_SECRET, APPLE_BODY) == f"hmacsha256={APPLE_DIGEST}"


def test_verify_accepts_apple_published_vector() -> None:
    assert verify(APPLE_BODY, f"hmacsha256={APPLE_DIGEST}", [APPLE_SECRET]) == 0


@pytest.mark.parametrize(
    "header",
    [
        f"hmacsha256={APPLE_DIGEST}",
        f"HMACSHA256={APPLE_DIGEST}",
        f"HmacSha256={APPLE_DIGEST}",
        f"hmacsha256={APPLE_DIGEST.upper()}",
        f"  hmacsha256={APPLE_DIGEST}  ",
        f"\thmacsha256={APPLE_DIGEST}\t",
        f"hmacsha256 = {APPLE_DIGEST}",
    ],
    ids=[
        "lower",
        "upper-scheme",
        "mixed-scheme",
        "upper-hex",
        "spaces",
        "tabs",
        "spaced-equals",
    ],
)
def test_verify_accepts_header_variants(header: str) -> None:
    assert verify(APPLE_BODY, header, [APPLE_SECRET]) == 0


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing"),
        ("", "missing"),
        ("   ", "missing"),
        (APPLE_DIGEST, "not in the form"),
        (f"sha256={APPLE_DIGEST}", "unsupported scheme"),
        (f"hmacsha1={APPLE_DIGEST}", "unsupported scheme"),
        ("hmacsha256=", "64 hexadecimal"),
        (f"hmacsha256={APPLE_DIGEST[:-2]}", "64 hexadecimal"),
        (f"hmacsha256={APPLE_DIGEST}00", "64 hexadecimal"),
        (f"hmacsha256={APPLE_DIGEST[:-1]}g", "not hexadecimal"),
        (f"hmacsha256={APPLE_DIGEST[:-1]}é", "non-ASCII"),
        (f"hmacsha256={APPLE_DIGEST[:30]} {APPLE_DIGEST[31:]}", "not hexadecimal"),
        (f"hmacsha256={'0' * 64}", "does not match"),
        (f"hmacsha256={APPLE_DIGEST[:-1]}8", "does not match"),
    ],
    ids=[
        "none",
        "empty",
        "blank",
        "no-scheme",
        "github-scheme",
        "sha1-scheme",
        "empty-digest",
        "short-digest",
        "long-digest",
        "non-hex",
        "non-ascii",
        "inner-space",
        "zeros",
        "one-digit-off",
    ],
)
def test_verify_rejects(header: str | None, reason: str) -> None:
    with pytest.raises(SignatureError) as caught:
        verify(APPLE_BODY, header, [APPLE_SECRET])
    assert reason in caught.value.reason


def test_verify_rejects_other_body() -> None:
    with pytest.raises(SignatureError):
        verify(b"Hello, World?", f"hmacsha256={APPLE_DIGEST}", [APPLE_SECRET])


def test_verify_rejects_other_secret() -> None:
    with pytest.raises(SignatureError):
        verify(APPLE_BODY, f"hmacsha256={APPLE_DIGEST}", [b"This is my secreT"])


def test_verify_rejects_when_no_secret_is_configured() -> None:
    with pytest.raises(SignatureError) as caught:
        verify(APPLE_BODY, f"hmacsha256={APPLE_DIGEST}", [])
    assert "no webhook secret" in caught.value.reason


def test_verify_returns_index_of_previous_secret() -> None:
    assert (
        verify(APPLE_BODY, f"hmacsha256={APPLE_DIGEST}", [b"new secret", APPLE_SECRET])
        == 1
    )


def test_verify_covers_raw_bytes_not_parsed_json() -> None:
    apple_layout = b'{\n  "data" : {\n    "type" : "webhookPingCreated"\n  }\n}'
    compact = b'{"data":{"type":"webhookPingCreated"}}'
    header = sign(b"s3cret-value", apple_layout)
    assert verify(apple_layout, header, [b"s3cret-value"]) == 0
    with pytest.raises(SignatureError):
        verify(compact, header, [b"s3cret-value"])


def test_verify_handles_multibyte_body() -> None:
    body = '{"comment": "crash on launch 🚀 — ü"}'.encode()
    header = "hmacsha256=" + hmac.new(b"k" * 16, body, hashlib.sha256).hexdigest()
    assert verify(body, header, [b"k" * 16]) == 0


def test_parse_signature_returns_32_bytes() -> None:
    assert parse_signature(f"hmacsha256={APPLE_DIGEST}") == bytes.fromhex(APPLE_DIGEST)


def test_signature_error_never_echoes_header() -> None:
    header = f"hmacsha256={'a' * 64}"
    with pytest.raises(SignatureError) as caught:
        verify(APPLE_BODY, header, [APPLE_SECRET])
    assert "a" * 16 not in str(caught.value)
    assert APPLE_SECRET.decode() not in str(caught.value)


def test_verify_compares_every_secret_in_constant_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import relay.signatures

    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(relay.signatures.hmac, "compare_digest", spy)
    secrets = [b"first-secret", APPLE_SECRET, b"third-secret"]
    assert verify(APPLE_BODY, f"hmacsha256={APPLE_DIGEST}", secrets) == 1
    assert len(calls) == 3
