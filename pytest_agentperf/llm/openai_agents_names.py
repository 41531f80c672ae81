"""openai-agents: name the running agent from its trace spans (see :mod:`.frameworks`)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from ._agent_scopes import OpenScopes

__all__ = ["install"]


def install(agents: ModuleType) -> Any:
    """Register an agent-naming trace processor with openai-agents; ``None`` if not it."""
    add = getattr(agents, "add_trace_processor", None)
    base = getattr(agents, "TracingProcessor", None)
    if add is None or base is None:  # another package called "agents"
        return None

    class AgentNames(base):  # type: ignore[misc, valid-type]
        """Opens an :func:`agent_scope` while an agent span is open."""

        def __init__(self) -> None:
            self.enabled = True
            self.scopes = OpenScopes()

        def on_span_start(self, span: Any) -> None:
            if not self.enabled:
                return
            data = getattr(span, "span_data", None)
            name = getattr(data, "name", None)
            if getattr(data, "type", None) != "agent" or not isinstance(name, str) or not name:
                return
            self.scopes.open(span.span_id, name)  # called in the agent's task

        def on_span_end(self, span: Any) -> None:
            self.scopes.close(getattr(span, "span_id", None))

        def on_trace_start(self, trace: Any) -> None:
            return None

        def on_trace_end(self, trace: Any) -> None:
            return None

        def shutdown(self) -> None:
            return None

        def force_flush(self) -> None:
            return None

    processor = AgentNames()
    add(processor)
    return processor
