from __future__ import annotations

import logging

import jwt
import pytest
import responses
from cryptography.hazmat.primitives.asymmetric import ec
from responses import matchers

from ci import asc as asc_module
from ci.asc import (
    DEFAULT_BASE_URL,
    TOKEN_LIFETIME,
    AgreementsMissingError,
    AppStoreConnect,
    Document,
    ForbiddenError,
    InvalidResourceUrlError,
    parse_state,
    resource_url,
)
from ci.errors import ConfigError
from ci.http import AuthError, ConflictError, NotFoundError, RateLimitedError
from tests.ci.conftest import (
    ISSUER_ID,
    KEY_ID,
    START_TIME,
    FakeClock,
    bearer_token,
    decode_token,
    document,
    error_body,
    error_entry,
    load_fixture,
    resource,
    url,
)

APPLE_UPLOAD_URL = f"{DEFAULT_BASE_URL}/v1/buildUploads/xx-xx-xx-xxx-xx"


# Tokens


def test_token_claims_team_key(
    asc: AppStoreConnect,
    mocked: responses.RequestsMock,
    private_key: ec.EllipticCurvePrivateKey,
) -> None:
    mocked.get(url("/v1/apps/1"), json=document(resource("apps", "1")))

    asc.get("/v1/apps/1")

    token = bearer_token(mocked.calls[0].request)
    header = jwt.get_unverified_header(token)
    claims = decode_token(token, private_key)
    assert header["alg"] == "ES256"
    assert header["kid"] == KEY_ID
    assert header["typ"] == "JWT"
    assert claims["aud"] == "appstoreconnect-v1"
    assert claims["iss"] == ISSUER_ID
    assert "sub" not in claims
    assert claims["iat"] == int(START_TIME) - 60
    assert claims["exp"] - claims["iat"] == TOKEN_LIFETIME


def test_token_lifetime_under_apple_cap() -> None:
    assert 60 < TOKEN_LIFETIME < 20 * 60


def test_token_claims_individual_key(
    asc_environ: dict[str, str],
    clock: FakeClock,
    mocked: responses.RequestsMock,
    private_key: ec.EllipticCurvePrivateKey,
) -> None:
    asc_environ["APP_STORE_CONNECT_API_KEY_ISSUER_ID"] = ""
    client = AppStoreConnect.from_environ(
        asc_environ, sleep=clock.sleep, clock=clock.time
    )
    mocked.get(url("/v1/apps/1"), json=document(resource("apps", "1")))

    client.get("/v1/apps/1")

    claims = decode_token(bearer_token(mocked.calls[0].request), private_key)
    assert claims["sub"] == "user"
    assert "iss" not in claims


def test_token_reused_then_renewed(
    asc: AppStoreConnect,
    clock: FakeClock,
    mocked: responses.RequestsMock,
    private_key: ec.EllipticCurvePrivateKey,
) -> None:
    mocked.get(url("/v1/apps/1"), json=document(resource("apps", "1")))

    asc.get("/v1/apps/1")
    clock.now += TOKEN_LIFETIME - 60 - 61  # 61 s left: still reused
    asc.get("/v1/apps/1")
    clock.now += 2  # 59 s left: renewed
    asc.get("/v1/apps/1")

    tokens = [bearer_token(call.request) for call in mocked.calls]
    assert tokens[0] == tokens[1]
    assert tokens[2] != tokens[1]
    renewed = decode_token(tokens[2], private_key)
    assert renewed["iat"] == int(clock.now) - 60


def test_401_refreshes_token_once(
    asc: AppStoreConnect, ordered: responses.RequestsMock
) -> None:
    unauthorized = error_body(
        error_entry(
            401,
            "NOT_AUTHORIZED",
            "Provide a properly configured and signed bearer token",
        )
    )
    ordered.get(url("/v1/apps/1"), status=401, json=unauthorized)
    ordered.get(url("/v1/apps/1"), json=document(resource("apps", "1")))

    body = asc.get("/v1/apps/1")

    assert body["data"]["id"] == "1"
    # ES256 signatures are randomized, so a re-signed token always differs.
    first, second = (bearer_token(call.request) for call in ordered.calls)
    assert first != second


def test_second_401_raises_with_hint(
    asc: AppStoreConnect,
    ordered: responses.RequestsMock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    unauthorized = error_body(
        error_entry(
            401,
            "NOT_AUTHORIZED",
            "Provide a properly configured and signed bearer token",
        )
    )
    ordered.get(url("/v1/apps/1"), status=401, json=unauthorized)
    ordered.get(url("/v1/apps/1"), status=401, json=unauthorized)

    with pytest.raises(AuthError) as caught:
        asc.get("/v1/apps/1")

    message = str(caught.value)
    assert caught.value.status == 401
    assert message.startswith(f"GET {url('/v1/apps/1')} returned 401: NOT_AUTHORIZED")
    assert "clock" in message
    assert "APP_STORE_CONNECT_API_KEY_KEY_ID" in message
    assert "APP_STORE_CONNECT_API_KEY_ISSUER_ID" in message
    for call in ordered.calls:
        token = bearer_token(call.request)
        assert token not in message
        assert token not in caplog.text


@pytest.mark.parametrize(
    ("entry", "error_class", "hint"),
    [
        (
            error_entry(
                403,
                "FORBIDDEN.REQUIRED_AGREEMENTS_MISSING_OR_EXPIRED",
                "A required agreement is missing or has expired.",
            ),
            AgreementsMissingError,
            "agreements",
        ),
        (
            error_entry(
                403,
                "FORBIDDEN_ERROR",
                "This request is forbidden for security reasons: The API key in use "
                "does not allow this request",
            ),
            ForbiddenError,
            "role",
        ),
    ],
    ids=["agreements", "permissions"],
)
def test_403_reads_as_cause(
    asc: AppStoreConnect,
    mocked: responses.RequestsMock,
    entry: dict,
    error_class: type[AuthError],
    hint: str,
) -> None:
    mocked.post(url("/v1/reviewSubmissions"), status=403, json=error_body(entry))

    with pytest.raises(error_class) as caught:
        asc.post("/v1/reviewSubmissions", {"data": {"type": "reviewSubmissions"}})

    assert isinstance(caught.value, AuthError)
    assert caught.value.status == 403
    assert entry["code"] in str(caught.value)
    assert hint in str(caught.value)
    assert len(mocked.calls) == 1


# Retries


def test_429_retried_then_succeeds(
    asc: AppStoreConnect,
    clock: FakeClock,
    ordered: responses.RequestsMock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    limited = error_body(
        error_entry(
            429, "RATE_LIMIT_EXCEEDED", "The request rate limit has been reached."
        )
    )
    ordered.get(
        url("/v1/apps/1"),
        status=429,
        json=limited,
        headers={"X-Rate-Limit": "user-hour-lim:3500;user-hour-rem:0;"},
    )
    ordered.get(
        url("/v1/apps/1"), status=429, json=limited, headers={"Retry-After": "7"}
    )
    ordered.get(url("/v1/apps/1"), json=document(resource("apps", "1")))

    body = asc.get("/v1/apps/1")

    assert body["data"]["id"] == "1"
    assert len(clock.sleeps) == 2
    assert clock.sleeps[1] == 7
    assert "user-hour-rem:0" in caplog.text


def test_429_exhausted_raises(asc: AppStoreConnect, clock: FakeClock, mocked) -> None:
    limited = error_body(
        error_entry(
            429, "RATE_LIMIT_EXCEEDED", "The request rate limit has been reached."
        )
    )
    mocked.get(url("/v1/apps/1"), status=429, json=limited)

    with pytest.raises(RateLimitedError) as caught:
        asc.get("/v1/apps/1")

    assert caught.value.codes == ["RATE_LIMIT_EXCEEDED"]
    assert len(mocked.calls) == asc.http.attempts
    assert len(clock.sleeps) == asc.http.attempts - 1


# Errors


def test_error_lists_every_entry(asc: AppStoreConnect, mocked) -> None:
    entries = [
        error_entry(409, "ENTITY_ERROR", "There is a problem with the request entity"),
        error_entry(
            409,
            "ENTITY_ERROR.ATTRIBUTE.INVALID.DUPLICATE",
            "The version number has been previously used.",
            pointer="/data/attributes/versionString",
        ),
    ]
    entries.append(
        {
            "status": "409",
            "code": "PARAMETER_ERROR.INVALID",
            "title": "A parameter has an invalid value",
            "detail": "'XR' is not a valid platform",
            "source": {"parameter": "filter[platform]"},
        }
    )
    mocked.post(url("/v1/appStoreVersions"), status=409, json=error_body(*entries))

    with pytest.raises(ConflictError) as caught:
        asc.post("/v1/appStoreVersions", {"data": {"type": "appStoreVersions"}})

    error = caught.value
    message = str(error)
    assert error.codes == [
        "ENTITY_ERROR",
        "ENTITY_ERROR.ATTRIBUTE.INVALID.DUPLICATE",
        "PARAMETER_ERROR.INVALID",
    ]
    assert error.errors[1]["source"] == {"pointer": "/data/attributes/versionString"}
    assert message.startswith(f"POST {url('/v1/appStoreVersions')} returned 409: ")
    assert "ENTITY_ERROR There is a problem" in message
    assert "previously used. (at /data/attributes/versionString)" in message
    assert "(at filter[platform])" in message


def test_error_includes_associated_errors(asc: AppStoreConnect, mocked) -> None:
    nested = error_entry(
        409,
        "ENTITY_ERROR.ATTRIBUTE.REQUIRED",
        "You must provide a value for the attribute 'whatsNew'",
        pointer="/data/attributes/whatsNew",
    )
    parent = error_entry(
        409, "STATE_ERROR.ENTITY_STATE_INVALID", "Submission is invalid"
    )
    parent["meta"] = {
        "associatedErrors": {"/v1/appStoreVersionLocalizations/9": [nested]}
    }
    mocked.patch(url("/v1/reviewSubmissions/5"), status=409, json=error_body(parent))

    with pytest.raises(ConflictError) as caught:
        asc.patch("/v1/reviewSubmissions/5", {"data": {}})

    assert caught.value.codes == [
        "STATE_ERROR.ENTITY_STATE_INVALID",
        "ENTITY_ERROR.ATTRIBUTE.REQUIRED",
    ]
    assert "whatsNew" in str(caught.value)


def test_error_non_json_body(asc: AppStoreConnect, mocked) -> None:
    mocked.get(url("/v1/apps/1"), status=404, body="<html>Not Found</html>")

    with pytest.raises(NotFoundError) as caught:
        asc.get("/v1/apps/1")

    assert "404: <html>Not Found</html>" in str(caught.value)


# URLs


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("/v1/apps/1", "/v1/apps/1"),
        (APPLE_UPLOAD_URL, "/v1/buildUploads/xx-xx-xx-xxx-xx"),
        (
            "https://api-appstoreconnect.itunes.apple.com/v1/apps/6/webhooks?limit=5",
            "/v1/apps/6/webhooks?limit=5",
        ),
        ("http://127.0.0.1:9901/v2/inAppPurchases/3", "/v2/inAppPurchases/3"),
    ],
)
def test_url_rebased_onto_base(asc: AppStoreConnect, given: str, expected: str) -> None:
    assert asc.url_for(given) == url(expected)


@pytest.mark.parametrize(
    "given",
    [
        "/apps/1",
        "v1/apps/1",
        "https://evil.example/steal",
        "/v1/",
        "ftp://x/v1/apps/1",
        "/v1/apps/../../admin",
        "",
    ],
)
def test_url_outside_api_rejected(asc: AppStoreConnect, given: str) -> None:
    with pytest.raises(InvalidResourceUrlError, match="/v1/"):
        asc.url_for(given)


def test_url_keeps_base_path_prefix(
    asc_environ: dict[str, str], clock: FakeClock
) -> None:
    asc_environ["ASC_API_URL"] = "http://127.0.0.1:9901/proxy/asc/"
    client = AppStoreConnect.from_environ(
        asc_environ, sleep=clock.sleep, clock=clock.time
    )

    assert client.url_for("/v1/apps/1") == "http://127.0.0.1:9901/proxy/asc/v1/apps/1"
    assert client.url_for(client.resource_url("apps", "1")) == (
        "http://127.0.0.1:9901/proxy/asc/v1/apps/1"
    )
    assert client.url_for(f"{DEFAULT_BASE_URL}/v1/apps/1") == (
        "http://127.0.0.1:9901/proxy/asc/v1/apps/1"
    )


@pytest.mark.parametrize("base", ["ftp://x", "127.0.0.1:9901", "http://h/?x=1"])
def test_base_url_invalid_rejected(asc_environ: dict[str, str], base: str) -> None:
    asc_environ["ASC_API_URL"] = base

    with pytest.raises(ConfigError, match="ASC_API_URL"):
        AppStoreConnect.from_environ(asc_environ)


def test_base_url_default_is_apple(asc_environ: dict[str, str]) -> None:
    del asc_environ["ASC_API_URL"]

    client = AppStoreConnect.from_environ(asc_environ)

    assert client.base_url == DEFAULT_BASE_URL


def test_resource_url_quotes_id() -> None:
    assert resource_url("buildUploads", "a/b c") == (
        f"{DEFAULT_BASE_URL}/v1/buildUploads/a%2Fb%20c"
    )


@pytest.mark.parametrize(
    ("kind", "ident"), [("../apps", "1"), ("Apps", "1"), ("apps", "")]
)
def test_resource_url_invalid_rejected(kind: str, ident: str) -> None:
    with pytest.raises(InvalidResourceUrlError):
        resource_url(kind, ident)


def test_webhook_link_fetched_from_base(asc: AppStoreConnect, mocked) -> None:
    fixture = load_fixture("build-upload-complete.json")
    mocked.get(
        url("/v1/buildUploads/xx-xx-xx-xxx-xx"),
        json=fixture,
        match=[matchers.query_param_matcher({"include": "build"})],
    )

    upload = asc.get(APPLE_UPLOAD_URL, {"include": "build"})

    assert upload["data"]["attributes"]["state"]["state"] == "COMPLETE"


# Paging


def test_get_all_pages_dedupes_and_stops(
    asc: AppStoreConnect,
    ordered: responses.RequestsMock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    path = "/v1/apps/1/appStoreVersions"
    page2 = f"{DEFAULT_BASE_URL}{path}?cursor=Mg&limit=200"
    page3 = f"{DEFAULT_BASE_URL}{path}?cursor=NA&limit=200"
    version = lambda ident: resource(
        "appStoreVersions", ident, build=("builds", f"b{ident}")
    )
    build = lambda ident: resource("builds", f"b{ident}")
    ordered.get(
        url(path),
        json=document([version("a"), version("b")], [build("a")], next_url=page2),
        match=[matchers.query_param_matcher({"limit": "200", "include": "build"})],
    )
    ordered.get(
        url(path),
        json=document([version("b"), version("c")], [build("a"), build("c")], page3),
        match=[matchers.query_param_matcher({"cursor": "Mg", "limit": "200"})],
    )
    ordered.get(
        url(path),
        json=document([version("d")], [], next_url=page2),
        match=[matchers.query_param_matcher({"cursor": "NA", "limit": "200"})],
    )

    collected = asc.get_collection(path, {"include": "build"})

    assert [item["id"] for item in collected.data] == ["a", "b", "c", "d"]
    assert [item["id"] for item in collected.included] == ["ba", "bc"]
    assert collected.related(collected.data[2], "build") == build("c")
    assert collected.related(collected.data[1], "build") is None
    assert "links.next repeats" in caplog.text
    assert len(ordered.calls) == 3


def test_get_all_returns_data_list(asc: AppStoreConnect, mocked) -> None:
    mocked.get(
        url("/v1/apps/1/betaGroups"),
        json=document([resource("betaGroups", "g1", {"name": "QA"})]),
        match=[matchers.query_param_matcher({"filter[name]": "QA", "limit": "200"})],
    )

    groups = asc.get_all("/v1/apps/1/betaGroups", {"filter[name]": "QA"})

    assert groups == [resource("betaGroups", "g1", {"name": "QA"})]


def test_get_all_keeps_caller_limit(asc: AppStoreConnect, mocked) -> None:
    mocked.get(
        url("/v1/apps/1/builds"),
        json=document([]),
        match=[matchers.query_param_matcher({"limit": "5"})],
    )

    assert asc.get_all("/v1/apps/1/builds", {"limit": 5}) == []


@pytest.mark.parametrize("platform", ["IOS", "MAC_OS", "TV_OS", "VISION_OS"])
def test_version_list_filters_platform(
    asc: AppStoreConnect, mocked, platform: str
) -> None:
    mocked.get(
        url("/v1/apps/1/appStoreVersions"),
        json=document([]),
        match=[
            matchers.query_param_matcher(
                {
                    "filter[platform]": platform,
                    "filter[versionString]": "2.0",
                    "include": "build",
                    "limit": "200",
                }
            )
        ],
    )

    assert asc.app_store_versions("1", "2.0", platform).data == []


def test_list_uses_client_platform(asc_environ, clock, mocked) -> None:
    client = AppStoreConnect.from_environ(
        asc_environ, sleep=clock.sleep, clock=clock.time, platform="vision_os"
    )
    mocked.get(
        url("/v1/apps/1/reviewSubmissions"),
        json=document([]),
        match=[
            matchers.query_param_matcher(
                {
                    "filter[platform]": "VISION_OS",
                    "filter[state]": "WAITING_FOR_REVIEW,IN_REVIEW",
                    "include": "items",
                    "limit": "200",
                }
            )
        ],
    )

    client.review_submissions("1", ["WAITING_FOR_REVIEW", "IN_REVIEW"])

    assert client.platform == "VISION_OS"


def test_platform_invalid_rejected(asc: AppStoreConnect) -> None:
    with pytest.raises(ConfigError, match="WATCH_OS"):
        asc.app_store_versions("1", "2.0", "WATCH_OS")


# Typed helpers


def test_build_upload_reads_real_fixture(asc: AppStoreConnect, mocked) -> None:
    fixture = load_fixture("build-upload-failed.json")
    mocked.get(
        url("/v1/buildUploads/xx-xx-xx-xx-xxx"),
        json=fixture,
        match=[matchers.query_param_matcher({"include": "build"})],
    )

    upload = asc.build_upload("xx-xx-xx-xx-xxx")

    assert isinstance(upload, Document)
    assert upload.data["attributes"]["state"]["errors"][0]["code"] == "90683"
    assert upload.included == []


def test_app_store_version_includes(asc: AppStoreConnect, mocked) -> None:
    fixture = load_fixture("app-store-version-ready-for-sale.json")
    mocked.get(
        url("/v1/appStoreVersions/xxx-xxx-xxx-xxx"),
        json=fixture,
        match=[matchers.query_param_matcher({"include": "build,app"})],
    )

    version = asc.app_store_version("xxx-xxx-xxx-xxx")

    assert version.data["attributes"]["appVersionState"] == "READY_FOR_DISTRIBUTION"


def test_beta_feedback_crash_with_log(asc: AppStoreConnect, ordered) -> None:
    submission = resource(
        "betaFeedbackCrashSubmissions",
        "AK7UjG-qL5QxXf3gIOGjbpQ",
        {"comment": "crashed on launch", "deviceModel": "iPhone15,2"},
        build=("builds", "b1"),
        tester=("betaTesters", "t1"),
    )
    ordered.get(
        url("/v1/betaFeedbackCrashSubmissions/AK7UjG-qL5QxXf3gIOGjbpQ"),
        json=document(submission, [resource("builds", "b1", {"version": "42"})]),
        match=[matchers.query_param_matcher({"include": "build,tester"})],
    )
    ordered.get(
        url("/v1/betaFeedbackCrashSubmissions/AK7UjG-qL5QxXf3gIOGjbpQ/crashLog"),
        json=document(resource("betaCrashLogs", "c1", {"logText": "Thread 0 Crashed"})),
    )

    crash = asc.beta_feedback_crash("AK7UjG-qL5QxXf3gIOGjbpQ")

    assert crash.log_text == "Thread 0 Crashed"
    assert crash.document.related(crash.document.data, "build")["attributes"] == {
        "version": "42"
    }


def test_beta_feedback_crash_without_log(asc: AppStoreConnect, ordered) -> None:
    ordered.get(
        url("/v1/betaFeedbackCrashSubmissions/c9"),
        json=document(resource("betaFeedbackCrashSubmissions", "c9")),
    )
    ordered.get(
        url("/v1/betaFeedbackCrashSubmissions/c9/crashLog"),
        status=404,
        json=error_body(error_entry(404, "NOT_FOUND", "There is no resource")),
    )

    crash = asc.beta_feedback_crash("c9")

    assert crash.log_text is None


def test_beta_feedback_screenshot_includes(asc: AppStoreConnect, mocked) -> None:
    mocked.get(
        url("/v1/betaFeedbackScreenshotSubmissions/s1"),
        json=document(resource("betaFeedbackScreenshotSubmissions", "s1")),
        match=[matchers.query_param_matcher({"include": "build,tester"})],
    )

    assert asc.beta_feedback_screenshot("s1").data["id"] == "s1"


def test_build_beta_detail_includes_build(asc: AppStoreConnect, mocked) -> None:
    detail = resource(
        "buildBetaDetails",
        "d1",
        {"externalBuildState": "BETA_APPROVED"},
        build=("builds", "b1"),
    )
    mocked.get(
        url("/v1/buildBetaDetails/d1"),
        json=document(detail, [resource("builds", "b1", {"version": "7"})]),
        match=[matchers.query_param_matcher({"include": "build"})],
    )

    fetched = asc.build_beta_detail("d1")

    assert fetched.related(fetched.data, "build")["id"] == "b1"


def test_patch_no_content_returns_none(asc: AppStoreConnect, mocked) -> None:
    body = {"data": {"type": "builds", "id": "b1"}}
    mocked.patch(
        url("/v1/appStoreVersions/v1/relationships/build"),
        status=204,
        match=[matchers.json_params_matcher(body)],
    )

    assert asc.patch("/v1/appStoreVersions/v1/relationships/build", body) is None


def test_delete_sends_delete(asc: AppStoreConnect, mocked) -> None:
    mocked.delete(url("/v1/betaFeedbackScreenshotSubmissions/s1"), status=204)

    asc.delete("/v1/betaFeedbackScreenshotSubmissions/s1")

    assert mocked.calls[0].request.method == "DELETE"


# States


def test_unknown_state_kept_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)

    value = parse_state(
        "WAITING_FOR_SOMETHING_NEW", asc_module.APP_VERSION_STATES, "test.state"
    )

    assert value == "WAITING_FOR_SOMETHING_NEW"
    assert "WAITING_FOR_SOMETHING_NEW" in caplog.text


def test_known_state_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)

    assert parse_state("IN_REVIEW", asc_module.APP_VERSION_STATES, "test.known") == (
        "IN_REVIEW"
    )
    assert caplog.text == ""


# Secrets


def test_no_secret_in_logs(
    asc: AppStoreConnect,
    ordered: responses.RequestsMock,
    private_key_pem: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    ordered.get(
        url("/v1/apps/1"),
        status=401,
        json=error_body(
            error_entry(401, "NOT_AUTHORIZED", "Provide a properly configured token")
        ),
    )
    ordered.get(url("/v1/apps/1"), status=503, body="busy")
    ordered.get(
        url("/v1/apps/1"),
        status=500,
        json=error_body(
            error_entry(500, "UNEXPECTED_ERROR", "An unexpected error occurred.")
        ),
    )
    ordered.get(url("/v1/apps/1"), json=document(resource("apps", "1")))

    asc.get("/v1/apps/1")

    key_lines = [line for line in private_key_pem.splitlines() if "-----" not in line]
    for call in ordered.calls:
        token = bearer_token(call.request)
        assert token not in caplog.text
        assert token.split(".")[2] not in caplog.text
    for line in key_lines:
        assert line not in caplog.text
    assert "returned 401" in caplog.text


@pytest.mark.parametrize("resource_id", [".", "..", "..."])
def test_resource_url_rejects_dot_ids(resource_id: str) -> None:
    from ci.asc import InvalidResourceUrlError, resource_url

    with pytest.raises(InvalidResourceUrlError, match="is invalid"):
        resource_url("buildUploads", resource_id)
