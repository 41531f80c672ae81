"""The safety net: LLM API requests seen at the HTTP layer that no captured call accounts for.

The ``openai`` and ``anthropic`` SDKs, litellm and most agent frameworks send their requests
through ``httpx`` (the SDKs here through its ``httpx2`` successor), whose ``Client.send`` /
``AsyncClient.send`` every request passes, whatever transport is mounted.  Those two methods
are patched: a ``POST`` to an LLM API path (ending ``chat/completions``, ``responses``,
``messages``, ``completions`` or ``embeddings``) is *attributed* when an SDK call of the
capture built it or it runs under a tracked inference span; otherwise its path is reported
to the capture's ``on_uncaptured`` callback, so that a token budget cannot pass on a call the
capture did not see.  The HTTP modules are only ever taken from ``sys.modules``.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .capture import LLMCapture

__all__ = ["LLM_PATH_SUFFIXES", "HTTPNet", "is_llm_request"]

LLM_PATH_SUFFIXES = ("/chat/completions", "/responses", "/messages", "/completions",
                     "/embeddings")
_MARK = "__agentperf_http_original__"


def is_llm_request(method: str, path: str) -> bool:
    """True for a request to an LLM API endpoint (by method and URL path)."""
    return method.upper() == "POST" and path.rstrip("/").endswith(LLM_PATH_SUFFIXES)


class HTTPNet:
    """The ``send`` patches of one HTTP package (``httpx`` or ``httpx2``)."""

    def __init__(self, package: str, capture: LLMCapture) -> None:
        self.package = package
        self._capture = capture
        self._originals: list[tuple[type, str, Any]] = []

    @property
    def installed(self) -> bool:
        return bool(self._originals)

    def install(self) -> bool:
        if self._originals:
            return True
        module = sys.modules.get(self.package)
        client = getattr(module, "Client", None)
        async_client = getattr(module, "AsyncClient", None)
        if client is None or async_client is None:
            return False
        self._patch(client, self._sync_send)
        self._patch(async_client, self._async_send)
        return True

    def uninstall(self) -> None:
        for cls, name, original in reversed(self._originals):
            if getattr(cls.__dict__.get(name), _MARK, None) is original:
                setattr(cls, name, original)
        self._originals.clear()

    def _patch(self, cls: type, make: Callable[[Any], Any]) -> None:
        original = cls.__dict__.get("send")
        if original is None:
            return
        wrapper = make(original)
        functools.update_wrapper(wrapper, original)
        setattr(wrapper, _MARK, original)
        cls.send = wrapper  # type: ignore[attr-defined]
        self._originals.append((cls, "send", original))

    def check(self, request: Any) -> None:
        """Report ``request`` when it is an LLM API request no captured call accounts for."""
        capture = self._capture
        report = capture.on_uncaptured
        if report is None:
            return
        try:
            method = request.method
            path = request.url.path
        except AttributeError:
            return
        if not isinstance(path, str) or not is_llm_request(str(method), path):
            return
        if capture.attributed(request):
            return
        report(path)

    def _sync_send(self, original: Any) -> Any:
        net = self

        def send(client: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            net.check(request)
            return original(client, request, *args, **kwargs)

        return send

    def _async_send(self, original: Any) -> Any:
        net = self

        async def send(client: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            net.check(request)
            return await original(client, request, *args, **kwargs)

        return send
