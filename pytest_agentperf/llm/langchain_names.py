"""LangChain / LangGraph: name the agent of each model run from its metadata (see
:mod:`.frameworks`)."""

from __future__ import annotations

import contextvars
import importlib
from types import ModuleType
from typing import Any

from ._agent_scopes import OpenScopes

__all__ = ["agent_of", "install"]

#: metadata keys naming the agent of a run, most specific first
AGENT_KEYS = ("lc_agent_name", "langgraph_node")


def agent_of(metadata: Any) -> str | None:
    """The agent a run belongs to, from its LangChain ``metadata``."""
    if not isinstance(metadata, dict):
        return None
    for key in AGENT_KEYS:
        value = metadata.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def install(langchain_core: ModuleType) -> Any:
    """Add an agent-naming callback handler to every LangChain run from now on."""
    context = importlib.import_module("langchain_core.tracers.context")
    callbacks: Any = importlib.import_module("langchain_core.callbacks")
    base = callbacks.BaseCallbackHandler

    class AgentNames(base):  # type: ignore[misc, valid-type]
        """Opens an :func:`agent_scope` from a chat model / LLM run's start to its end."""

        run_inline = True  # in the run's own task and context, not in an executor
        raise_error = False
        # only model runs matter: LangChain skips this handler for every other event
        ignore_chain = True
        ignore_agent = True
        ignore_retriever = True
        ignore_retry = True
        ignore_custom_event = True

        def __init__(self) -> None:
            super().__init__()
            self.enabled = True
            self.scopes = OpenScopes()

        def _start(self, run_id: Any, metadata: Any) -> None:
            name = agent_of(metadata) if self.enabled else None
            if name is not None:
                self.scopes.open(run_id, name)

        def _end(self, run_id: Any) -> None:
            self.scopes.close(run_id)

        def on_chat_model_start(
            self, serialized: Any, messages: Any, *, run_id: Any,
            metadata: Any = None, **kwargs: Any,
        ) -> None:
            self._start(run_id, metadata)

        def on_llm_start(
            self, serialized: Any, prompts: Any, *, run_id: Any, metadata: Any = None,
            **kwargs: Any,
        ) -> None:
            self._start(run_id, metadata)

        def on_llm_end(self, response: Any, *, run_id: Any, **kwargs: Any) -> None:
            self._end(run_id)

        def on_llm_error(self, error: BaseException, *, run_id: Any, **kwargs: Any) -> None:
            self._end(run_id)

    handler = AgentNames()
    # a context variable whose default is the handler: every run, in every context, gets it
    var: contextvars.ContextVar[Any] = contextvars.ContextVar(
        "pytest_agentperf_langchain_agent_names", default=handler
    )
    context.register_configure_hook(var, True)
    return handler
