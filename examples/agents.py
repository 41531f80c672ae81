"""A tiny offline multi-agent system used by the example suite.

No network and no model: the "LLM" answers deterministically, takes a little
time and reports token usage the way a provider would, so budgets are
meaningful and the suite runs anywhere.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int


class FakeLLM:
    """Answers after ``latency`` seconds; usage is proportional to text length."""

    def __init__(self, latency: float = 0.002) -> None:
        self.latency = latency

    async def complete(self, prompt: str) -> Completion:
        await asyncio.sleep(self.latency)
        digest = hashlib.sha256(prompt.encode()).hexdigest()[:16]
        answer = f"answer-{digest}"
        return Completion(answer, len(prompt.split()) * 2, len(answer) // 2)


class Agent:
    def __init__(self, name: str, llm: FakeLLM) -> None:
        self.name = name
        self.llm = llm

    async def run(self, task: str) -> Completion:
        return await self.llm.complete(f"You are {self.name}. Task: {task}")


class Crew:
    """Planner -> researchers (in parallel) -> writer."""

    def __init__(self, llm: FakeLLM, researchers: int = 3) -> None:
        self.planner = Agent("planner", llm)
        self.researchers = [Agent(f"researcher-{i}", llm) for i in range(researchers)]
        self.writer = Agent("writer", llm)
