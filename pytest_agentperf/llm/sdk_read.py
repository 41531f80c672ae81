"""Readers both SDK adapters share (``openai_capture``, ``anthropic_capture``).

The two SDKs come from one generator: requests carry ``FinalRequestOptions`` (``method``,
``url``), results carry ``model`` and ``id``, usage fields are ints or missing.
"""

from __future__ import annotations

from typing import Any

from ._pending import PendingCall

__all__ = ["int_field", "post_path", "read_identity"]


def int_field(obj: Any, name: str) -> int | None:
    """``obj.<name>`` when it is an int (not a bool), else ``None``."""
    value = getattr(obj, name, None)
    if type(value) is int:  # the common case, one check
        return value
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def post_path(options: Any) -> str | None:
    """The URL path (no query, no trailing ``/``) of a ``POST`` request's options; ``None``
    for another method or a URL that is not a string."""
    if str(getattr(options, "method", "")).lower() != "post":
        return None
    url = getattr(options, "url", "")
    if not isinstance(url, str):
        return None
    return url.split("?", 1)[0].rstrip("/")


def read_identity(pending: PendingCall, result: Any) -> None:
    """The response's ``model`` and ``id``, where the result has them as strings."""
    model = getattr(result, "model", None)
    if isinstance(model, str):
        pending.response_model = model
    rid = getattr(result, "id", None)
    if isinstance(rid, str):
        pending.response_id = rid
