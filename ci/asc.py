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

The token signer (``ci.asc_token``), error parsing (``ci.asc_errors``), document
types (``ci.asc_documents``), state values (``ci.asc_states``) and the typed
resource helpers (``ci.asc_resources``) live in their own modules, and their
public names stay importable from this one.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from ci.asc_documents import CrashSubmission, Document, attribute, related_id
from ci.asc_errors import (
    AGREEMENTS_HINT,
    FORBIDDEN_HINT,
    TOKEN_HINT,
    AgreementsMissingError,
    ForbiddenError,
    InvalidResourceUrlError,
    parse_error_response,
)
from ci.asc_resources import ResourceHelpers
from ci.asc_states import (
    APP_VERSION_STATES,
    BUILD_PROCESSING_STATES,
    BUILD_UPLOAD_STATES,
    DEFAULT_PLATFORM,
    EXTERNAL_BETA_STATES,
    PLATFORMS,
    REVIEW_SUBMISSION_STATES,
    parse_state,
    validate_platform,
)
from ci.asc_token import (
    AUDIENCE,
    TOKEN_BACKDATE,
    TOKEN_LIFETIME,
    TOKEN_RENEW_MARGIN,
    TokenSigner,
)
from ci.credentials import AscCredentials
from ci.errors import ConfigError
from ci.http import ApiError, AuthError, HttpClient

# Names defined in the asc_* modules stay importable from here.
__all__ = [
    "AGREEMENTS_HINT",
    "APP_VERSION_STATES",
    "AUDIENCE",
    "BASE_URL_VAR",
    "BUILD_PROCESSING_STATES",
    "BUILD_UPLOAD_STATES",
    "DEFAULT_BASE_URL",
    "DEFAULT_PLATFORM",
    "EXTERNAL_BETA_STATES",
    "FORBIDDEN_HINT",
    "PAGE_LIMIT",
    "PLATFORMS",
    "REVIEW_SUBMISSION_STATES",
    "TOKEN_BACKDATE",
    "TOKEN_HINT",
    "TOKEN_LIFETIME",
    "TOKEN_RENEW_MARGIN",
    "AgreementsMissingError",
    "AppStoreConnect",
    "CrashSubmission",
    "Document",
    "ForbiddenError",
    "InvalidResourceUrlError",
    "TokenSigner",
    "attribute",
    "parse_error_response",
    "parse_state",
    "related_id",
    "resource_url",
    "validate_platform",
]

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.appstoreconnect.apple.com"
BASE_URL_VAR = "ASC_API_URL"

#: Apple's maximum ``limit`` for collection requests.
PAGE_LIMIT = 200

# Paths the client sends requests to: /v1/..., /v2/... and so on.
API_PATH = re.compile(r"/v[0-9]+/[A-Za-z]")
RESOURCE_TYPE = re.compile(r"[a-z][A-Za-z0-9]*")


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
    if not resource_id.strip("."):
        # quote() leaves "." and ".." alone, and they would move up the path.
        raise InvalidResourceUrlError(
            f"resource id {resource_id!r} for {resource_type} is invalid"
        )
    return f"{base_url.rstrip('/')}/v1/{resource_type}/{quote(resource_id, safe='')}"


class AppStoreConnect(ResourceHelpers):
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
