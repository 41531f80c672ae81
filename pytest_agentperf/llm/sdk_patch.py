"""Patching of the request path shared by the ``openai`` and ``anthropic`` SDKs.

Both SDKs route every API method (``create``, ``parse``, the ``stream()`` helpers, raw and
streaming-response wrappers) through ``SyncAPIClient.request`` / ``AsyncAPIClient.request``
in ``<sdk>._base_client``, which builds each HTTP attempt with ``BaseClient._build_request``;
every result, whoever asks for it and whenever, is made by ``BaseAPIResponse._parse`` (also
``LegacyAPIResponse._parse`` for ``with_raw_response``), an error status by
``BaseClient._make_status_error_from_response`` and a timeout or connection failure, once the
retries are spent, by ``APIConnectionError.__init__`` (``APITimeoutError`` is one).  Those are
patched:

* ``request`` opens the call's window (start time, agent, the span it runs under; spans
  started inside it belong to it) and records an exception as the call's error;
* ``_build_request`` ties each HTTP attempt to the call (and counts retries).  When an
  instrumentation captured ``request`` before the patch (OpenInference's
  ``OpenAI.request`` wrapper, logfire's ``client.request = ...``), the call starts here;
* ``_make_status_error_from_response`` and ``APIConnectionError.__init__`` end the call of the
  failed HTTP attempt as an error, also when ``request`` was not ours;
* ``_parse`` reads the result (usage, model, response id) or wraps the ``Stream`` built from
  it, for a plain call inside ``request`` and for ``with_raw_response`` /
  ``with_streaming_response`` responses parsed later, anywhere.

These private methods are the deepest points the two SDKs share; instrumentations wrap the
public client classes and resources above them, so they cannot route around the capture.
The SDK modules are only ever taken from ``sys.modules``: nothing here imports an SDK.
"""

from __future__ import annotations

import contextvars
import inspect
import sys
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from ._pending import PendingCall
from .calls import _AGENT
from .limits import _SCOPED, BudgetExceeded, admit, check_stream
from .patches import MethodPatches

if TYPE_CHECKING:
    from .capture import LLMCapture

__all__ = ["SDKAdapter", "SDKPatch"]

_MARK = "__agentperf_llm_original__"
_MAX_ROUTES = 256
_READ, _STREAM, _ASTREAM = 0, 1, 2


class SDKAdapter(Protocol):
    """What one SDK contributes: its name, its routes and how to read its results."""

    provider: str
    package: str

    def classify(self, options: Any) -> str | None:
        """The operation name of a request (``FinalRequestOptions``), ``None`` to ignore it;
        a function of ``options.method`` and ``options.url`` only (it is remembered)."""

    def read_result(self, pending: PendingCall, result: Any) -> None:
        """Fill usage, response model and response id from a non-streamed result."""

    def read_item(self, pending: PendingCall, item: Any) -> None:
        """Observe one streamed event: ``pending.first_content()``, usage and response id."""


def _pop(requests: weakref.WeakKeyDictionary[Any, PendingCall], request: Any) -> Any:
    """The call tied to ``request`` (an ``httpx`` request), forgotten; ``None`` when none."""
    try:
        return requests.pop(request, None)
    except TypeError:  # not weak-referenceable (None, a foreign object)
        return None


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
        self._patches = MethodPatches(_MARK)
        self._stream_types: tuple[type, ...] = ()
        self._async_stream_types: tuple[type, ...] = ()
        self._response_types: tuple[type, ...] = ()
        #: the class of a result -> how to observe it (``_READ``, ``_STREAM``, ``_ASTREAM``)
        self._kinds: dict[type, int] = {}
        #: (method, url) of a request -> its operation (``None``: not an LLM call)
        self._routes: dict[tuple[Any, Any], str | None] = {}
        self._provider = adapter.provider
        self._note_sdk_call = capture.span_processor.note_sdk_call
        self.retries_visible = False
        #: a new call's ``retries``: 0, or ``None`` when this SDK version does not show them
        self._retries_start: int | None = None
        #: the HTTP attempt (``httpx.Request``) -> its call, until the response is parsed
        self.requests: weakref.WeakKeyDictionary[Any, PendingCall] = weakref.WeakKeyDictionary()
        #: the call last started by ``_build_request`` in this context (its retries find it)
        self._started: contextvars.ContextVar[PendingCall | None] = contextvars.ContextVar(
            f"agentperf_{adapter.package}_started", default=None
        )

    @property
    def installed(self) -> bool:
        return bool(self._patches)

    def started_call(self) -> PendingCall | None:
        """The call ``_build_request`` last started in this context, when not finished."""
        pending = self._started.get()
        return pending if pending is not None and not pending.done else None

    def install(self) -> bool:
        """Patch the SDK if it is imported; True when patched (now or before)."""
        if self._patches:
            return True
        pkg = self.adapter.package
        modules = sys.modules
        base = modules.get(f"{pkg}._base_client")
        streaming = modules.get(f"{pkg}._streaming")
        response = modules.get(f"{pkg}._response")
        if base is None or streaming is None or response is None:
            return False
        sync_cls = getattr(base, "SyncAPIClient", None)
        async_cls = getattr(base, "AsyncAPIClient", None)
        base_cls = getattr(base, "BaseClient", None)
        api_response = getattr(response, "BaseAPIResponse", None)
        if sync_cls is None or async_cls is None or base_cls is None or api_response is None:
            return False
        parsers = [api_response]
        legacy = modules.get(f"{pkg}._legacy_response")
        if legacy is not None and hasattr(legacy, "LegacyAPIResponse"):
            parsers.append(legacy.LegacyAPIResponse)
        self._response_types = tuple(parsers)
        self._stream_types = (streaming.Stream,)
        self._async_stream_types = (streaming.AsyncStream,)
        build = base_cls.__dict__.get("_build_request")
        try:
            self.retries_visible = build is not None and (
                "retries_taken" in inspect.signature(build).parameters
            )
        except (TypeError, ValueError):
            self.retries_visible = False
        self._retries_start = 0 if self.retries_visible else None
        self._kinds.clear()
        self._patch(sync_cls, "request", self._sync_request)
        self._patch(async_cls, "request", self._async_request)
        self._patch(base_cls, "_build_request", self._build_request)
        self._patch(base_cls, "_make_status_error_from_response", self._status_error)
        for cls in parsers:
            self._patch(cls, "_parse", self._parse)
        errors = modules.get(f"{pkg}._exceptions")
        connection_error = getattr(errors, "APIConnectionError", None)
        if isinstance(connection_error, type):
            self._patch(connection_error, "__init__", self._connection_error)
        return True

    def uninstall(self) -> None:
        """Restore the originals (only where our wrapper is still the installed one)."""
        self._patches.restore()

    def _patch(self, cls: type, name: str, make: Callable[[Any], Any]) -> None:
        self._patches.patch(cls, name, make)

    # -- start of a call ---------------------------------------------------------------
    def _classify(self, options: Any) -> str | None:
        """``adapter.classify``, remembered per (method, url): an SDK asks the same few."""
        try:
            key = (options.method, options.url)
            return self._routes[key]
        except KeyError:
            operation = self.adapter.classify(options)
            if len(self._routes) < _MAX_ROUTES:
                self._routes[key] = operation
            return operation
        except (AttributeError, TypeError):  # options of an unknown shape, an unhashable url
            return self.adapter.classify(options)

    def _begin(self, options: Any) -> PendingCall | None:
        # runs inside every SDK call: lookups inlined (the route, the request's model)
        capture = self._capture
        sink = capture.sink
        if sink is None or capture.inflight.get() is not None:
            return None
        try:
            operation = self._routes[(options.method, options.url)]
        except (KeyError, AttributeError, TypeError):
            operation = self._classify(options)
        if operation is None:
            return None
        limits = capture.limits
        scoped = _SCOPED.get()
        if limits is not None or scoped is not None:
            scoped = admit(limits, scoped)  # a hard limit reached: raises, nothing is sent
        data = getattr(options, "json_data", None)
        model = data.get("model") if type(data) is dict else _request_model(options)
        pending = PendingCall(
            sink, self._provider, operation, model if isinstance(model, str) else None,
            _AGENT.get(), self._note_sdk_call, self._retries_start,
        )
        pending.limits = scoped
        processor = capture.span_processor
        if processor.live_spans:  # only when spans are open: the one that is current
            span_agent = processor.on_sdk_call(pending)
            if pending.agent is None:
                pending.agent = span_agent
        return pending

    def _build_request(self, original: Any) -> Any:
        patch = self
        inflight = self._capture.inflight
        started = self._started
        requests = self.requests

        def build_request(client: Any, options: Any, *args: Any, **kwargs: Any) -> Any:
            request = original(client, options, *args, **kwargs)
            retries = kwargs.get("retries_taken", 0)
            pending = inflight.get()
            if pending is None:  # ``request`` was not ours: an instrumentation wrapped it first
                if not retries:
                    pending = patch._begin(options)
                    if pending is None and started.get() is None:
                        return request
                    started.set(pending)
                else:
                    pending = started.get()
                if pending is None:
                    return request
            if isinstance(retries, int) and pending.retries is not None:
                pending.retries = retries
            requests[request] = pending
            return request

        return build_request

    def _status_error(self, original: Any) -> Any:
        requests = self.requests

        def make_status_error(client: Any, response: Any, *args: Any, **kwargs: Any) -> Any:
            err = original(client, response, *args, **kwargs)
            try:
                pending = _pop(requests, response.request)
            except (AttributeError, RuntimeError):  # a response without its request
                pending = None
            if pending is not None and not pending.done:
                pending.fail(err)
                pending.finish()
            return err

        return make_status_error

    def _connection_error(self, original: Any) -> Any:
        requests = self.requests

        def init(err: Any, *args: Any, **kwargs: Any) -> None:
            original(err, *args, **kwargs)
            pending = _pop(requests, getattr(err, "request", None))
            if pending is not None and not pending.done:
                pending.fail(err)
                pending.finish()

        return init

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
            patch._returned(pending, result)
            return result

        return request

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
            patch._returned(pending, result)
            return result

        return request

    # -- the result ----------------------------------------------------------------------
    def _parse(self, original: Any) -> Any:
        patch = self
        requests = self.requests

        def parse(response: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                pending = _pop(requests, response.http_response.request)
            except (AttributeError, RuntimeError):
                pending = None
            if pending is None or pending.observed:
                return original(response, *args, **kwargs)
            try:
                result = original(response, *args, **kwargs)
            except BaseException as exc:
                pending.fail(exc)
                pending.finish()
                raise
            patch._after(pending, result)
            return result

        return parse

    def _returned(self, pending: PendingCall, result: Any) -> None:
        """``request`` returned: the call's result was parsed already, or will be later."""
        if pending.observed:
            return
        if isinstance(result, self._response_types):
            # with_raw_response / with_streaming_response: ``parse()`` comes later (or never:
            # then the call is counted, without usage, when the response is dropped)
            weakref.finalize(result, pending.abandon)
            return
        self._after(pending, result)

    def _after(self, pending: PendingCall, result: Any) -> None:
        pending.observed = True
        cls = type(result)
        kind = self._kinds.get(cls)
        if kind is None:
            if issubclass(cls, self._stream_types):
                kind = _STREAM
            elif issubclass(cls, self._async_stream_types):
                kind = _ASTREAM
            else:
                kind = _READ
            if len(self._kinds) < _MAX_ROUTES:
                self._kinds[cls] = kind
        if kind == _READ:
            try:
                self.adapter.read_result(pending, result)
            finally:
                pending.finish()
        else:
            pending.streamed = True
            wrap = _wrap_sync_stream if kind == _STREAM else _wrap_async_stream
            wrap(result, pending, self.adapter.read_item)


def _wrap_sync_stream(
    stream: Any, pending: PendingCall, read_item: Callable[[PendingCall, Any], None]
) -> None:
    inner: Iterator[Any] = stream._iterator
    cls_close = type(stream).close
    ref = weakref.ref(stream)

    def observed() -> Iterator[Any]:
        try:
            for item in inner:
                read_item(pending, item)
                if pending.limits is not None:
                    try:
                        check_stream(pending)
                    except BudgetExceeded:
                        s = ref()
                        if s is not None:
                            cls_close(s)  # stop reading: the response is closed
                        raise
                yield item
        except GeneratorExit:
            raise
        except BaseException as exc:
            pending.fail(exc)
            raise
        finally:
            pending.finish()

    stream._iterator = observed()

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
    cls_close = type(stream).close
    ref = weakref.ref(stream)

    async def observed() -> AsyncIterator[Any]:
        try:
            async for item in inner:
                read_item(pending, item)
                if pending.limits is not None:
                    try:
                        check_stream(pending)
                    except BudgetExceeded:
                        s = ref()
                        if s is not None:
                            await cls_close(s)  # stop reading: the response is closed
                        raise
                yield item
        except GeneratorExit:
            raise
        except BaseException as exc:
            pending.fail(exc)
            raise
        finally:
            pending.finish()

    stream._iterator = observed()

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
