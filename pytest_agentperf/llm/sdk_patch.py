"""Patching of the request loop shared by the ``openai`` and ``anthropic`` SDKs.

Both SDKs route every API method (``create``, ``parse``, the ``stream()`` helpers, raw and
streaming-response wrappers) through ``SyncAPIClient.request`` / ``AsyncAPIClient.request``
in ``<sdk>._base_client``, with retries inside that loop (``_sleep_for_retry``).  Patching
those two methods, not each resource, sees every call once, with its retries, and the
``Stream`` object of a streamed call, whose iterator is then wrapped to observe each event.

The SDK modules are only ever taken from ``sys.modules``: nothing here imports an SDK.
"""

from __future__ import annotations

import contextvars
import functools
import sys
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from ._pending import PendingCall
from .calls import current_agent

if TYPE_CHECKING:
    from .capture import LLMCapture

__all__ = ["SDKAdapter", "SDKPatch"]

_MARK = "__agentperf_llm_original__"


class SDKAdapter(Protocol):
    """What one SDK contributes: its name, its routes and how to read its results."""

    provider: str
    package: str

    def classify(self, options: Any) -> str | None:
        """The operation name of a request (``FinalRequestOptions``), ``None`` to ignore it."""

    def read_result(self, pending: PendingCall, result: Any) -> None:
        """Fill usage and response model from a non-streamed result."""

    def read_item(self, pending: PendingCall, item: Any) -> None:
        """Observe one streamed event: ``pending.first_content()`` and usage."""


def _request_model(options: Any) -> str | None:
    data = getattr(options, "json_data", None)
    if isinstance(data, dict):
        model = data.get("model")
        if isinstance(model, str):
            return model
    return None


class SDKPatch:
    """The patches of one SDK, installed and removed as a whole."""

    def __init__(self, adapter: SDKAdapter, capture: LLMCapture) -> None:
        self.adapter = adapter
        self._capture = capture
        self._originals: list[tuple[type, str, Any]] = []
        self._stream_types: tuple[type, ...] = ()
        self._async_stream_types: tuple[type, ...] = ()
        self.retries_visible = False

    @property
    def installed(self) -> bool:
        return bool(self._originals)

    def install(self) -> bool:
        """Patch the SDK if it is imported; True when patched (now or before)."""
        if self._originals:
            return True
        pkg = self.adapter.package
        base = sys.modules.get(f"{pkg}._base_client")
        streaming = sys.modules.get(f"{pkg}._streaming")
        if base is None or streaming is None:
            return False
        sync_cls = getattr(base, "SyncAPIClient", None)
        async_cls = getattr(base, "AsyncAPIClient", None)
        if sync_cls is None or async_cls is None:
            return False
        self._stream_types = (streaming.Stream,)
        self._async_stream_types = (streaming.AsyncStream,)
        self._patch(sync_cls, "request", self._sync_request)
        self._patch(async_cls, "request", self._async_request)
        self._patch(sync_cls, "_sleep_for_retry", self._sync_retry)
        self._patch(async_cls, "_sleep_for_retry", self._async_retry)
        self.retries_visible = "_sleep_for_retry" in sync_cls.__dict__
        return True

    def uninstall(self) -> None:
        """Restore the originals (only where our wrapper is still the installed one)."""
        for cls, name, original in reversed(self._originals):
            current = cls.__dict__.get(name)
            if getattr(current, _MARK, None) is original:
                setattr(cls, name, original)
        self._originals.clear()

    def _patch(self, cls: type, name: str, make: Callable[[Any], Any]) -> None:
        original = cls.__dict__.get(name)
        if original is None:
            return
        wrapper = make(original)
        functools.update_wrapper(wrapper, original)
        setattr(wrapper, _MARK, original)
        setattr(cls, name, wrapper)
        self._originals.append((cls, name, original))

    # -- start of a call ---------------------------------------------------------------
    def _begin(self, options: Any) -> PendingCall | None:
        capture = self._capture
        sink = capture.sink
        if sink is None or capture.inflight.get() is not None:
            return None
        operation = self.adapter.classify(options)
        if operation is None:
            return None
        agent = current_agent()
        span_agent = capture.span_processor.on_sdk_call()
        if agent is None:
            agent = span_agent
        pending = PendingCall(
            sink, self.adapter.provider, operation, _request_model(options), agent
        )
        if not self.retries_visible:
            pending.retries = None  # an SDK version without the retry hook: not visible
        return pending

    # -- sync ----------------------------------------------------------------------------
    def _sync_request(self, original: Any) -> Any:
        patch = self

        def request(client: Any, cast_to: Any, options: Any, *args: Any, **kwargs: Any) -> Any:
            pending = patch._begin(options)
            if pending is None:
                return original(client, cast_to, options, *args, **kwargs)
            inflight = patch._capture.inflight
            token = inflight.set(pending)
            try:
                result = original(client, cast_to, options, *args, **kwargs)
            except BaseException as exc:
                pending.fail(exc)
                pending.finish()
                raise
            finally:
                inflight.reset(token)
            patch._after(pending, result)
            return result

        return request

    def _sync_retry(self, original: Any) -> Any:
        inflight = self._capture.inflight

        def sleep_for_retry(client: Any, *args: Any, **kwargs: Any) -> Any:
            pending = inflight.get()
            if pending is not None and pending.retries is not None:
                pending.retries += 1
            return original(client, *args, **kwargs)

        return sleep_for_retry

    # -- async ---------------------------------------------------------------------------
    def _async_request(self, original: Any) -> Any:
        patch = self

        async def request(
            client: Any, cast_to: Any, options: Any, *args: Any, **kwargs: Any
        ) -> Any:
            pending = patch._begin(options)
            if pending is None:
                return await original(client, cast_to, options, *args, **kwargs)
            inflight = patch._capture.inflight
            token = inflight.set(pending)
            try:
                result = await original(client, cast_to, options, *args, **kwargs)
            except BaseException as exc:
                pending.fail(exc)
                pending.finish()
                raise
            finally:
                inflight.reset(token)
            patch._after(pending, result)
            return result

        return request

    def _async_retry(self, original: Any) -> Any:
        inflight = self._capture.inflight

        async def sleep_for_retry(client: Any, *args: Any, **kwargs: Any) -> Any:
            pending = inflight.get()
            if pending is not None and pending.retries is not None:
                pending.retries += 1
            return await original(client, *args, **kwargs)

        return sleep_for_retry

    # -- the result ----------------------------------------------------------------------
    def _after(self, pending: PendingCall, result: Any) -> None:
        if isinstance(result, self._stream_types):
            pending.streamed = True
            _wrap_sync_stream(result, pending, self.adapter.read_item)
        elif isinstance(result, self._async_stream_types):
            pending.streamed = True
            _wrap_async_stream(result, pending, self.adapter.read_item)
        else:
            try:
                self.adapter.read_result(pending, result)
            finally:
                pending.finish()


def _wrap_sync_stream(
    stream: Any, pending: PendingCall, read_item: Callable[[PendingCall, Any], None]
) -> None:
    inner: Iterator[Any] = stream._iterator

    def observed() -> Iterator[Any]:
        try:
            for item in inner:
                read_item(pending, item)
                yield item
        except GeneratorExit:
            raise
        except BaseException as exc:
            pending.fail(exc)
            raise
        finally:
            pending.finish()

    stream._iterator = observed()
    cls_close = type(stream).close
    ref = weakref.ref(stream)

    def close() -> None:
        try:
            s = ref()
            if s is not None:
                cls_close(s)
        finally:
            pending.finish()

    stream.close = close


def _wrap_async_stream(
    stream: Any, pending: PendingCall, read_item: Callable[[PendingCall, Any], None]
) -> None:
    inner: AsyncIterator[Any] = stream._iterator

    async def observed() -> AsyncIterator[Any]:
        try:
            async for item in inner:
                read_item(pending, item)
                yield item
        except GeneratorExit:
            raise
        except BaseException as exc:
            pending.fail(exc)
            raise
        finally:
            pending.finish()

    stream._iterator = observed()
    cls_close = type(stream).close
    ref = weakref.ref(stream)

    async def close() -> None:
        try:
            s = ref()
            if s is not None:
                await cls_close(s)
        finally:
            pending.finish()

    stream.close = close


def new_inflight_var() -> contextvars.ContextVar[PendingCall | None]:
    """A fresh context key for the call in flight (one per capture controller)."""
    return contextvars.ContextVar("pytest_agentperf_llm_inflight", default=None)
