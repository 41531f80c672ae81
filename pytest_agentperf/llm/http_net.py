"""The safety net: LLM API requests seen at the HTTP layer that no captured call accounts for.

The ``openai`` and ``anthropic`` SDKs, litellm and most agent frameworks send their requests
through ``httpx`` (the SDKs here through its ``httpx2`` successor), whose ``Client.send`` /
``AsyncClient.send`` every request passes, whatever transport is mounted.  Those two methods
are patched: a ``POST`` to an LLM API path (ending ``chat/completions``, ``responses``,
``messages``, ``completions`` or ``embeddings``) is *attributed* when an SDK call of the
capture built it or it runs under a tracked inference span; otherwise its path is reported
to the capture's ``on_uncaptured`` callback, so that a token budget cannot pass on a call the
capture did not see.

``aiohttp`` is watched too (hand-rolled clients, libraries built on it): every request of a
``ClientSession`` goes through ``ClientSession._request``, patched on the class, so sessions
made by user code are covered without a ``TraceConfig`` of their own.  A request that an
``httpx`` ``send`` checked already (an ``httpx`` client with an aiohttp transport, such as the
``openai`` SDK's ``DefaultAioHttpClient``) is not checked again.  The HTTP modules are only
ever taken from ``sys.modules``.
"""

from __future__ import annotations

import contextvars
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .patches import MethodPatches

if TYPE_CHECKING:
    from .capture import LLMCapture

__all__ = ["LLM_PATH_SUFFIXES", "HTTPNet", "is_llm_request"]

LLM_PATH_SUFFIXES = ("/chat/completions", "/responses", "/messages", "/completions",
                     "/embeddings")
_MARK = "__agentperf_http_original__"
#: an LLM API request being sent through ``httpx`` was checked: the transport under it
#: (aiohttp) must not check it again.  A context key, not state.
_CHECKED: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "pytest_agentperf_http_checked", default=False
)


def is_llm_request(method: str, path: str) -> bool:
    """True for a request to an LLM API endpoint (by method and URL path)."""
    return method.upper() == "POST" and path.rstrip("/").endswith(LLM_PATH_SUFFIXES)


class HTTPNet:
    """The patches of one HTTP package: ``send`` of ``httpx`` / ``httpx2``, ``aiohttp``'s
    ``ClientSession._request``."""

    def __init__(self, package: str, capture: LLMCapture) -> None:
        self.package = package
        self._capture = capture
        self._patches = MethodPatches(_MARK)

    @property
    def installed(self) -> bool:
        return bool(self._patches)

    def install(self) -> bool:
        if self._patches:
            return True
        module = sys.modules.get(self.package)
        if self.package == "aiohttp":
            session = getattr(module, "ClientSession", None)
            if not isinstance(session, type) or "_request" not in session.__dict__:
                return False
            self._patch(session, self._aiohttp_request, "_request")
            return True
        client = getattr(module, "Client", None)
        async_client = getattr(module, "AsyncClient", None)
        if client is None or async_client is None:
            return False
        self._patch(client, self._sync_send)
        self._patch(async_client, self._async_send)
        return True

    def uninstall(self) -> None:
        self._patches.restore()

    def _patch(self, cls: type, make: Callable[[Any], Any], name: str = "send") -> None:
        self._patches.patch(cls, name, make)

    def check(self, request: Any) -> bool:
        """Report ``request`` (an ``httpx`` request) when it is an LLM API request that no
        captured call accounts for; True when an LLM API request was checked here (the
        transport below must not check it again)."""
        capture = self._capture
        report = capture.on_uncaptured
        if report is None or capture.inflight.get() is not None:
            return False  # not watching; or an SDK call of ours is sending it
        try:
            method = request.method
            path = request.url.path
        except AttributeError:
            return False
        if not isinstance(path, str) or not is_llm_request(str(method), path):
            return False
        if not capture.attributed(request):
            report(path)
        return True

    def _sync_send(self, original: Any) -> Any:
        net = self

        def send(client: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            if _CHECKED.get() or not net.check(request):
                return original(client, request, *args, **kwargs)
            token = _CHECKED.set(True)
            try:
                return original(client, request, *args, **kwargs)
            finally:
                _CHECKED.reset(token)

        return send

    def _async_send(self, original: Any) -> Any:
        net = self

        async def send(client: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            if _CHECKED.get() or not net.check(request):
                return await original(client, request, *args, **kwargs)
            token = _CHECKED.set(True)
            try:
                return await original(client, request, *args, **kwargs)
            finally:
                _CHECKED.reset(token)

        return send

    def _aiohttp_request(self, original: Any) -> Any:
        capture = self._capture

        async def _request(session: Any, method: Any, str_or_url: Any, *args: Any,
                           **kwargs: Any) -> Any:
            report = capture.on_uncaptured
            if report is not None and isinstance(method, str) and method.upper() == "POST" \
                    and not _CHECKED.get():
                path = _aiohttp_path(session, str_or_url)
                if path is not None and is_llm_request(method, path) \
                        and not capture.attributed(None):
                    report(path)
            return await original(session, method, str_or_url, *args, **kwargs)

        return _request


def _aiohttp_path(session: Any, str_or_url: Any) -> str | None:
    """The URL path an ``aiohttp`` session will request (its ``base_url`` joined)."""
    try:
        build = getattr(session, "_build_url", None)
        url = build(str_or_url) if build is not None else str_or_url
        path = getattr(url, "path", None)
        if path is None and isinstance(url, str):
            from urllib.parse import urlsplit

            path = urlsplit(url).path
    except Exception:  # an URL aiohttp itself will reject: its error, not ours
        return None
    return path if isinstance(path, str) else None
