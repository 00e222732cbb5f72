"""App Store Connect API client: token signing, URL handling, errors, paging.

Every request goes through :class:`ci.http.HttpClient`, so timeouts, retries of
429 and 5xx and the error classes match the other API clients. This module adds
what is specific to App Store Connect:

- an ES256 JWT signed with the team or individual API key, cached and renewed
  shortly before it expires, and renewed once more when a request returns 401;
- URLs: ``ASC_API_URL`` replaces ``https://api.appstoreconnect.apple.com``, and
  absolute URLs (a webhook's ``links.self``, a ``links.next``) are rebased onto
  it, so the token is only ever sent to the configured host;
- error messages that list every entry of Apple's ``errors`` array;
- paging over ``links.next`` with de-duplication;
- lenient parsing of Apple's state values.

Platform: list calls that Apple filters by platform (``appStoreVersions``,
``reviewSubmissions``, ``buildUploads``) take a ``platform`` argument that
defaults to ``AppStoreConnect.platform`` (``IOS`` unless set). Other list
calls have no platform filter.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import jwt
import requests

from ci.credentials import ISSUER_ID_VAR, KEY_ID_VAR, AscCredentials
from ci.errors import AutomationError, ConfigError
from ci.http import ApiError, AuthError, HttpClient

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.appstoreconnect.apple.com"
BASE_URL_VAR = "ASC_API_URL"
AUDIENCE = "appstoreconnect-v1"

#: Seconds between a token's ``iat`` and ``exp``. Apple rejects tokens whose
#: lifetime exceeds 20 minutes. 15 minutes keeps 5 minutes of margin in case
#: Apple's check also uses its own clock, and lets one token serve a whole
#: job's burst of requests.
TOKEN_LIFETIME = 15 * 60
#: ``iat`` is set this many seconds in the past, so a runner clock slightly
#: ahead of Apple's does not produce a token that is not yet valid.
TOKEN_BACKDATE = 60
#: A cached token is replaced when it has less than this many seconds left.
TOKEN_RENEW_MARGIN = 60

#: Apple's maximum ``limit`` for collection requests.
PAGE_LIMIT = 200

PLATFORMS = frozenset({"IOS", "MAC_OS", "TV_OS", "VISION_OS"})
DEFAULT_PLATFORM = "IOS"

# Apple's enums (App Store Connect API 4.x). Values outside them are kept as
# strings and logged once, because Apple adds states without notice.
BUILD_UPLOAD_STATES = frozenset({"AWAITING_UPLOAD", "PROCESSING", "FAILED", "COMPLETE"})
BUILD_PROCESSING_STATES = frozenset({"PROCESSING", "FAILED", "INVALID", "VALID"})
APP_VERSION_STATES = frozenset(
    {
        "ACCEPTED",
        "DEVELOPER_REJECTED",
        "IN_REVIEW",
        "INVALID_BINARY",
        "METADATA_REJECTED",
        "PENDING_APPLE_RELEASE",
        "PENDING_DEVELOPER_RELEASE",
        "PREPARE_FOR_SUBMISSION",
        "PROCESSING_FOR_DISTRIBUTION",
        "READY_FOR_DISTRIBUTION",
        "READY_FOR_REVIEW",
        "REJECTED",
        "REPLACED_WITH_NEW_VERSION",
        "WAITING_FOR_EXPORT_COMPLIANCE",
        "WAITING_FOR_REVIEW",
    }
)
REVIEW_SUBMISSION_STATES = frozenset(
    {
        "READY_FOR_REVIEW",
        "WAITING_FOR_REVIEW",
        "IN_REVIEW",
        "UNRESOLVED_ISSUES",
        "CANCELING",
        "COMPLETING",
        "COMPLETE",
    }
)
EXTERNAL_BETA_STATES = frozenset(
    {
        "PROCESSING",
        "PROCESSING_EXCEPTION",
        "MISSING_EXPORT_COMPLIANCE",
        "READY_FOR_BETA_TESTING",
        "IN_BETA_TESTING",
        "EXPIRED",
        "READY_FOR_BETA_SUBMISSION",
        "IN_EXPORT_COMPLIANCE_REVIEW",
        "WAITING_FOR_BETA_REVIEW",
        "IN_BETA_REVIEW",
        "BETA_REJECTED",
        "BETA_APPROVED",
        "NOT_APPLICABLE",
    }
)

# Paths the client sends requests to: /v1/..., /v2/... and so on.
API_PATH = re.compile(r"/v[0-9]+/[A-Za-z]")
RESOURCE_TYPE = re.compile(r"[a-z][A-Za-z0-9]*")

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

_reported_states: set[tuple[str, str]] = set()


class AgreementsMissingError(AuthError):
    """403: a required agreement is missing or expired, so Apple blocks the call."""


class ForbiddenError(AuthError):
    """403: the API key's role lacks permission for the request."""


class InvalidResourceUrlError(AutomationError, ValueError):
    """A URL or path does not name an App Store Connect API resource."""


def parse_state(value: Any, known: frozenset[str], field_name: str) -> str | None:
    """Return Apple's state value as a string, logging values outside ``known``.

    Never raises: an unknown state is reported once per process and returned.
    """
    if value is None:
        return None
    text = str(value)
    if text not in known and (field_name, text) not in _reported_states:
        _reported_states.add((field_name, text))
        logger.warning(
            "unknown %s value %r from App Store Connect; kept as is", field_name, text
        )
    return text


def resource_url(
    resource_type: str, resource_id: str, *, base_url: str = DEFAULT_BASE_URL
) -> str:
    """Return the URL of one resource, such as ``/v1/buildUploads/{id}``.

    Use it when a webhook carries no ``links.self``. Raises
    InvalidResourceUrlError for a type that is not an API resource name.
    """
    if not RESOURCE_TYPE.fullmatch(resource_type):
        raise InvalidResourceUrlError(
            f"resource type {resource_type!r} is invalid: expected an App Store "
            "Connect resource type such as 'buildUploads'"
        )
    if not resource_id:
        raise InvalidResourceUrlError(f"resource id for {resource_type} is empty")
    return f"{base_url.rstrip('/')}/v1/{resource_type}/{quote(resource_id, safe='')}"


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


@dataclass
class Document:
    """A JSON:API document: primary ``data``, ``included`` resources and ``links``.

    ``data`` is a resource object, a list of them, or None.
    """

    data: Any
    included: list[dict[str, Any]] = field(default_factory=list)
    links: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Document:
        return cls(
            data=body.get("data"),
            included=list(body.get("included") or []),
            links=dict(body.get("links") or {}),
        )

    def find_included(
        self, resource_type: str, resource_id: str
    ) -> dict[str, Any] | None:
        """Return the included resource with this type and id, or None."""
        for resource in self.included:
            if (
                resource.get("type") == resource_type
                and resource.get("id") == resource_id
            ):
                return resource
        return None

    def related(self, resource: Mapping[str, Any], name: str) -> dict[str, Any] | None:
        """Return the included resource that ``resource``'s to-one ``name`` links to.

        None when the relationship is empty or was not included.
        """
        linkage = related_id(resource, name)
        if linkage is None:
            return None
        return self.find_included(*linkage)

    def related_many(
        self, resource: Mapping[str, Any], name: str
    ) -> list[dict[str, Any]]:
        """Return the included resources of ``resource``'s to-many ``name``."""
        relationship = (resource.get("relationships") or {}).get(name) or {}
        found = []
        for linkage in relationship.get("data") or []:
            item = self.find_included(linkage.get("type"), linkage.get("id"))
            if item is not None:
                found.append(item)
        return found


def related_id(resource: Mapping[str, Any], name: str) -> tuple[str, str] | None:
    """Return ``(type, id)`` of a to-one relationship, or None when it is empty.

    Also None when the response carried only links for it (not included).
    """
    relationship = (resource.get("relationships") or {}).get(name) or {}
    linkage = relationship.get("data")
    if not isinstance(linkage, dict) or not linkage.get("id"):
        return None
    return str(linkage.get("type")), str(linkage["id"])


def attribute(resource: Mapping[str, Any] | None, name: str) -> Any:
    """Return one attribute of a resource object, or None when absent."""
    if not resource:
        return None
    return (resource.get("attributes") or {}).get(name)


@dataclass
class CrashSubmission:
    """A TestFlight crash report (with build and tester) and its crash log text.

    ``log_text`` is None when Apple has no crash log for the report.
    """

    document: Document
    log_text: str | None


class TokenSigner:
    """Sign and cache App Store Connect JWTs with an API key.

    ``clock`` returns Unix seconds; tests pass a fake one.
    """

    def __init__(
        self,
        credentials: AscCredentials,
        *,
        clock: Callable[[], float] = time.time,
        lifetime: int = TOKEN_LIFETIME,
    ) -> None:
        if not 0 < lifetime <= 20 * 60:
            raise ValueError(f"token lifetime {lifetime}s is outside 1..1200 seconds")
        self.credentials = credentials
        self.clock = clock
        self.lifetime = lifetime
        self._token: str | None = None
        self._expires_at = 0.0

    def token(self) -> str:
        """Return the cached token, signing a new one when under a minute is left."""
        if self._token is None or self._expires_at - self.clock() < TOKEN_RENEW_MARGIN:
            self._token = self._sign()
        return self._token

    def invalidate(self) -> None:
        """Drop the cached token so the next request signs a new one."""
        self._token = None

    def _sign(self) -> str:
        issued_at = int(self.clock()) - TOKEN_BACKDATE
        expires_at = issued_at + self.lifetime
        claims: dict[str, Any] = {"aud": AUDIENCE, "iat": issued_at, "exp": expires_at}
        if self.credentials.issuer_id is None:
            claims["sub"] = "user"
        else:
            claims["iss"] = self.credentials.issuer_id
        token = jwt.encode(
            claims,
            self.credentials.private_key,
            algorithm="ES256",
            headers={"kid": self.credentials.key_id, "typ": "JWT"},
        )
        self._expires_at = float(expires_at)
        logger.debug(
            "signed App Store Connect token for key %s", self.credentials.key_id
        )
        return token


class AppStoreConnect:
    """A client for the App Store Connect API.

    ``platform`` is the default for list calls that Apple filters by platform.
    """

    def __init__(
        self,
        credentials: AscCredentials,
        *,
        base_url: str = DEFAULT_BASE_URL,
        platform: str = DEFAULT_PLATFORM,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = _validated_base_url(base_url)
        self.platform = validate_platform(platform)
        self.signer = TokenSigner(credentials, clock=clock)
        self.http = HttpClient(
            "asc", session=session, sleep=sleep, error_parser=parse_error_response
        )

    @classmethod
    def from_environ(
        cls,
        environ: Mapping[str, str],
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        platform: str = DEFAULT_PLATFORM,
    ) -> AppStoreConnect:
        """Build a client from fastlane's key variables and ``ASC_API_URL``."""
        credentials = AscCredentials.from_environ(environ)
        base_url = environ.get(BASE_URL_VAR, "").strip() or DEFAULT_BASE_URL
        return cls(
            credentials, base_url=base_url, platform=platform, sleep=sleep, clock=clock
        )

    # URLs

    def url_for(self, path_or_url: str) -> str:
        """Return the request URL for an API path or an absolute API URL.

        An absolute URL keeps its path and query but gets the configured base,
        so a ``links.self`` that names Apple's host, or another Apple host,
        still reaches ``ASC_API_URL``. Raises InvalidResourceUrlError for a
        path outside ``/v1/``, ``/v2/`` and so on.
        """
        parts = urlsplit(path_or_url)
        if parts.scheme and parts.scheme not in ("http", "https"):
            raise InvalidResourceUrlError(
                f"URL {path_or_url!r} is invalid: expected an https URL or a path "
                "such as /v1/apps/{id}"
            )
        path = parts.path
        # URLs built from this client or returned through a proxy already
        # carry the base URL's own path prefix.
        prefix = urlsplit(self.base_url).path
        if prefix and path.startswith(f"{prefix}/"):
            path = path[len(prefix) :]
        if not API_PATH.match(path) or any(
            segment in (".", "..") for segment in path.split("/")
        ):
            raise InvalidResourceUrlError(
                f"{path_or_url!r} is not an App Store Connect API path: expected a "
                "path that starts with /v1/ (or /v2/, /v3/), such as /v1/builds/{id}"
            )
        query = f"?{parts.query}" if parts.query else ""
        return f"{self.base_url}{path}{query}"

    def resource_url(self, resource_type: str, resource_id: str) -> str:
        """Return the configured-base URL of one resource."""
        return resource_url(resource_type, resource_id, base_url=self.base_url)

    # Requests

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
    ) -> requests.Response:
        """Send an authorized request; renew the token once if it returns 401.

        Raises AuthError with a hint on a second 401, AgreementsMissingError or
        ForbiddenError on 403, and the other ApiError subclasses as HttpClient does.
        """
        url = self.url_for(path_or_url)
        response = self._send(method, url, params, body)
        if response.status_code == 401:
            logger.warning(
                "asc %s %s returned 401; signing a new token and retrying", method, url
            )
            self.signer.invalidate()
            response = self._send(method, url, params, body)
            if response.status_code == 401:
                raise self._with_hint(AuthError, method, url, response, TOKEN_HINT)
        if response.status_code == 403:
            raise self._forbidden_error(method, url, response)
        return response

    def _send(
        self, method: str, url: str, params: Mapping[str, Any] | None, body: Any
    ) -> requests.Response:
        headers = {
            "Authorization": f"Bearer {self.signer.token()}",
            "Accept": "application/json",
        }
        return self.http.request(
            method, url, headers=headers, params=params, json=body, expected=(401, 403)
        )

    def _forbidden_error(
        self, method: str, url: str, response: requests.Response
    ) -> AuthError:
        _, errors = parse_error_response(response)
        codes = " ".join(str(entry.get("code") or "") for entry in errors).upper()
        details = " ".join(str(entry.get("detail") or "") for entry in errors).lower()
        if "AGREEMENT" in codes or "agreement" in details:
            return self._with_hint(
                AgreementsMissingError, method, url, response, AGREEMENTS_HINT
            )
        return self._with_hint(ForbiddenError, method, url, response, FORBIDDEN_HINT)

    def _with_hint(
        self,
        cls: type[AuthError],
        method: str,
        url: str,
        response: requests.Response,
        hint: str,
    ) -> AuthError:
        base = self.http.error_for(method, url, response)
        return cls(
            method,
            url,
            response.status_code,
            str(base),
            errors=base.errors,
            response=response,
            hint=hint,
        )

    def get(
        self, path_or_url: str, params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Return the whole JSON document of a GET request."""
        return _json_body(self.request("GET", path_or_url, params=params))

    def get_document(
        self, path_or_url: str, params: dict[str, Any] | None = None
    ) -> Document:
        """GET one document and wrap it as a :class:`Document`."""
        return Document.from_json(self.get(path_or_url, params))

    def get_collection(
        self, path: str, params: dict[str, Any] | None = None
    ) -> Document:
        """Fetch every page of a collection into one :class:`Document`.

        Sends ``limit=200`` unless ``params`` sets a limit, follows
        ``links.next``, keeps the first copy of each ``data`` and ``included``
        resource by type and id, and stops with a warning when Apple repeats
        a ``next`` link.
        """
        query = dict(params or {})
        query.setdefault("limit", PAGE_LIMIT)

        data: dict[tuple[str, str], dict[str, Any]] = {}
        included: dict[tuple[str, str], dict[str, Any]] = {}
        seen_links: set[str] = set()
        url: str | None = path
        pages = 0
        duplicates = 0

        while url is not None:
            body = self.get(url, query if pages == 0 else None)
            pages += 1
            duplicates += _merge_resources(data, body.get("data") or [])
            _merge_resources(included, body.get("included") or [])

            next_link = (body.get("links") or {}).get("next")
            if not next_link:
                url = None
            elif next_link in seen_links or next_link == path:
                logger.warning(
                    "asc GET %s: links.next repeats %s after %d pages; stopping",
                    path,
                    next_link,
                    pages,
                )
                url = None
            else:
                seen_links.add(next_link)
                url = next_link

        if duplicates:
            logger.info(
                "asc GET %s: dropped %d duplicate resources across pages",
                path,
                duplicates,
            )
        return Document(data=list(data.values()), included=list(included.values()))

    def get_all(
        self, path: str, params: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Return the ``data`` resources of every page (see :meth:`get_collection`)."""
        return list(self.get_collection(path, params).data)

    def post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST a JSON:API document and return the created document."""
        return _json_body(self.request("POST", path, body=body))

    def patch(self, path: str, body: Mapping[str, Any]) -> dict[str, Any] | None:
        """PATCH a resource or relationship; returns None on 204 No Content."""
        response = self.request("PATCH", path, body=body)
        if response.status_code == 204 or not response.content:
            return None
        return _json_body(response)

    def delete(self, path: str) -> None:
        """DELETE a resource or relationship."""
        self.request("DELETE", path)

    # Typed helpers: each returns the response as a Document.

    def build_upload(self, build_upload_id: str) -> Document:
        """``GET /v1/buildUploads/{id}?include=build``: the upload and its build.

        The build is absent until Apple links it to the upload.
        """
        return self.get_document(
            self.resource_url("buildUploads", build_upload_id), {"include": "build"}
        )

    def build(self, build_id: str, include: Iterable[str] = ("app",)) -> Document:
        """``GET /v1/builds/{id}``, by default with its app included."""
        return self.get_document(
            self.resource_url("builds", build_id), _include(include)
        )

    def app(self, app_id: str) -> Document:
        """``GET /v1/apps/{id}``: bundle ID, name and SKU in the attributes."""
        return self.get_document(self.resource_url("apps", app_id))

    def app_store_version(
        self, version_id: str, include: Iterable[str] = ("build", "app")
    ) -> Document:
        """``GET /v1/appStoreVersions/{id}``, by default with its build and app."""
        return self.get_document(
            self.resource_url("appStoreVersions", version_id), _include(include)
        )

    def app_store_versions(
        self, app_id: str, version_string: str, platform: str | None = None
    ) -> Document:
        """List the app's versions with this version string on ``platform``."""
        return self.get_collection(
            f"/v1/apps/{quote(app_id, safe='')}/appStoreVersions",
            {
                "filter[platform]": validate_platform(platform or self.platform),
                "filter[versionString]": version_string,
                "include": "build",
            },
        )

    def review_submissions(
        self, app_id: str, states: Iterable[str], platform: str | None = None
    ) -> Document:
        """List the app's review submissions in ``states`` on ``platform``.

        Each item's ``appStoreVersion`` relationship names the version it holds.
        """
        return self.get_collection(
            f"/v1/apps/{quote(app_id, safe='')}/reviewSubmissions",
            {
                "filter[platform]": validate_platform(platform or self.platform),
                "filter[state]": ",".join(states),
                "include": "items",
            },
        )

    def beta_feedback_screenshot(self, submission_id: str) -> Document:
        """Fetch a TestFlight screenshot report with its build and tester.

        The screenshot URLs in ``attributes.screenshots`` expire.
        """
        return self.get_document(
            self.resource_url("betaFeedbackScreenshotSubmissions", submission_id),
            {"include": "build,tester"},
        )

    def beta_feedback_crash(self, submission_id: str) -> CrashSubmission:
        """Fetch a TestFlight crash report, its build and tester, and its crash log."""
        url = self.resource_url("betaFeedbackCrashSubmissions", submission_id)
        document = self.get_document(url, {"include": "build,tester"})
        try:
            log = self.get(f"{url}/crashLog")
        except ApiError as exc:
            if exc.status != 404:
                raise
            logger.info("crash report %s has no crash log yet", submission_id)
            return CrashSubmission(document=document, log_text=None)
        return CrashSubmission(
            document=document, log_text=attribute(log.get("data"), "logText")
        )

    def build_beta_detail(self, detail_id: str) -> Document:
        """``GET /v1/buildBetaDetails/{id}?include=build``: TestFlight states, build."""
        return self.get_document(
            self.resource_url("buildBetaDetails", detail_id), {"include": "build"}
        )


def validate_platform(platform: str) -> str:
    """Return ``platform`` upper-cased; raise ConfigError for an unknown platform."""
    value = platform.strip().upper()
    if value not in PLATFORMS:
        raise ConfigError(
            f"platform {platform!r} is invalid: use one of "
            f"{', '.join(sorted(PLATFORMS))}"
        )
    return value


def _validated_base_url(base_url: str) -> str:
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"{BASE_URL_VAR} is invalid ({base_url!r}): set it to an http(s) URL "
            f"such as {DEFAULT_BASE_URL}, or leave it unset"
        )
    if parts.query or parts.fragment:
        raise ConfigError(
            f"{BASE_URL_VAR} ({base_url!r}) must not have a query or fragment"
        )
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def _include(names: Iterable[str]) -> dict[str, Any] | None:
    joined = ",".join(names)
    return {"include": joined} if joined else None


def _merge_resources(
    target: dict[tuple[str, str], dict[str, Any]], resources: Any
) -> int:
    """Add resources not yet in ``target``; return how many were duplicates."""
    if isinstance(resources, dict):
        resources = [resources]
    duplicates = 0
    for resource in resources:
        key = (str(resource.get("type")), str(resource.get("id")))
        if key in target:
            duplicates += 1
            continue
        target[key] = resource
    return duplicates


def _json_body(response: requests.Response) -> dict[str, Any]:
    if not response.content:
        return {}
    try:
        body = response.json()
    except ValueError:
        raise ApiError(
            response.request.method or "GET",
            response.url,
            response.status_code,
            f"{response.request.method} {response.url} returned {response.status_code} "
            "with a body that is not JSON",
            response=response,
        ) from None
    if not isinstance(body, dict):
        raise ApiError(
            response.request.method or "GET",
            response.url,
            response.status_code,
            f"{response.request.method} {response.url} returned {response.status_code} "
            "with JSON that is not an object",
            response=response,
        )
    return body
