"""The real App Store Connect webhook bodies bundled with the relay.

They keep Apple's exact bytes (``"key" : value`` layout), because a signature
covers the raw body. Their ids were replaced by one placeholder before
publication, so :func:`with_fresh_id` gives a body its own event id.
"""

from __future__ import annotations

import re
import uuid
from importlib import resources

SAMPLE_NAMES = sorted(
    entry.name.removesuffix(".json")
    for entry in resources.files("relay").joinpath("data/webhooks").iterdir()
    if entry.name.endswith(".json") and not entry.name.endswith(".headers.json")
)

# The first "id" in a body is data.id: Apple writes type, id, version first.
_FIRST_ID = re.compile(rb'("id"\s*:\s*")([^"]*)(")')


def load_sample(name: str) -> bytes:
    """Return the raw bytes of a bundled sample by name, without ``.json``."""
    if name not in SAMPLE_NAMES:
        raise KeyError(
            f"no bundled sample {name!r}; choose one of {', '.join(SAMPLE_NAMES)}"
        )
    return resources.files("relay").joinpath(f"data/webhooks/{name}.json").read_bytes()


def with_fresh_id(body: bytes, event_id: str | None = None) -> bytes:
    """Replace the body's ``data.id`` with a new id, leaving every other byte alone."""
    new_id = (event_id or str(uuid.uuid4())).encode()
    return _FIRST_ID.sub(
        lambda match: match.group(1) + new_id + match.group(3), body, count=1
    )
