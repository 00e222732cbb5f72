"""JSON:API documents returned by App Store Connect and helpers to read them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


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
