"""Agent names from the frameworks that name their agents, for the ``per_agent`` breakdown.

A framework that runs several agents says which one is running through a public hook; these
adapters turn that into an :func:`~pytest_agentperf.llm.agent_scope` around the agent's
LLM calls, so the SDK capture attributes each call to its agent:

* **openai-agents** (``agents``): a trace processor (``agents.add_trace_processor``); each
  agent span names the agent for the calls made while it is open.  Nothing is exported, and
  the framework's own processors are left alone.  Tracing switched off
  (``OPENAI_AGENTS_DISABLE_TRACING``, ``RunConfig(tracing_disabled=True)``) means no names.
* **LangChain / LangGraph** (``langchain_core``): a callback handler added to every run
  through ``langchain_core.tracers.context.register_configure_hook``; a chat model or LLM
  run is attributed to ``metadata["lc_agent_name"]`` (an agent made by ``create_agent`` with
  a ``name``) or else to ``metadata["langgraph_node"]`` (the LangGraph node it runs in).

:class:`FrameworkHooks` lists ``(module name, hook)`` pairs for a post-import hook mechanism
(:class:`~pytest_agentperf.llm.import_hook.PostImportHooks`): each adapter is installed the
moment its framework finishes importing, and this module imports no framework itself.
:meth:`FrameworkHooks.close` switches every installed adapter off (the frameworks offer no
way to unregister, so the adapters stay registered but inert).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any, Protocol

__all__ = ["ADAPTERS", "Adapter", "FrameworkHooks"]


class Adapter(Protocol):
    """What an installed framework adapter offers: switching it off."""

    enabled: bool


#: framework module -> the module of this package whose ``install(framework_module)`` adapts it
ADAPTERS: dict[str, str] = {
    "agents": "openai_agents_names",
    "langchain_core": "langchain_names",
}


class FrameworkHooks:
    """The post-import hooks of the framework adapters of one session."""

    def __init__(self) -> None:
        self.installed: dict[str, Adapter] = {}

    def hooks(self) -> list[tuple[str, Callable[[ModuleType], None]]]:
        """``(module name, hook)`` pairs to register with a post-import hook mechanism."""
        return [(name, self._hook(name, home)) for name, home in ADAPTERS.items()]

    def _hook(self, name: str, home: str) -> Callable[[ModuleType], None]:
        def hook(module: ModuleType) -> None:
            if name in self.installed:
                return
            adapter_module: Any = importlib.import_module(f"{__package__}.{home}")
            adapter = adapter_module.install(module)
            if adapter is not None:
                self.installed[name] = adapter

        return hook

    def close(self) -> None:
        """Switch every installed adapter off."""
        for adapter in self.installed.values():
            adapter.enabled = False
        self.installed.clear()
