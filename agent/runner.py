"""Running the graph: one agent run opens the MCP sessions and the thread store once, then takes
turns. Threads are checkpointed in SQLite under $TRAINOPS_HOME, so a run that dies can be resumed
(and resuming never launches twice: launches carry an idempotency key)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import aiosqlite
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.types import Command

from agent.context import AgentContext
from agent.events import Event
from agent.graph import builder
from agent.pricing import money
from agent.request import Request
from agent.state import STATE_MODELS
from agent.tools import Toolbox
from common.settings import Settings

RECURSION_LIMIT = 10_000
EventHandler = Callable[[Event], None]
ApprovalHandler = Callable[[dict[str, Any]], str | None]


@dataclass
class TurnResult:
    thread_id: str
    answer: str
    facts: dict[str, Any] = field(default_factory=dict)
    pending_approval: dict[str, Any] | None = None
    """The question when the turn stopped at an approval nobody answered yet."""


class Agent:
    def __init__(
        self,
        settings: Settings,
        *,
        llm: Any | None = None,
        fallback_dataset: str | None = None,
        detach: bool = False,
        on_event: EventHandler | None = None,
    ) -> None:
        self.settings = settings
        self.detach = detach
        self.llm = llm
        self.fallback_dataset = fallback_dataset
        self.on_event = on_event or (lambda event: None)
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Agent:
        path = self.settings.home / "agent" / "threads.sqlite"
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.tools = await self._stack.enter_async_context(Toolbox(self.settings))
            connection = await self._stack.enter_async_context(aiosqlite.connect(str(path)))
            # The state's typed values come back as the models they were, and only those.
            saver = AsyncSqliteSaver(
                connection, serde=JsonPlusSerializer(allowed_msgpack_modules=STATE_MODELS)
            )
        except BaseException:
            await self._stack.aclose()
            raise
        self.graph = builder().compile(checkpointer=saver)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    def _config(self, thread_id: str) -> RunnableConfig:
        return {"configurable": {"thread_id": thread_id}, "recursion_limit": RECURSION_LIMIT}

    def _context(self, thread_id: str) -> AgentContext:
        return AgentContext(
            settings=self.settings,
            tools=self.tools,
            llm=self.llm,
            fallback_dataset=self.fallback_dataset,
            thread_id=thread_id,
            detach=self.detach,
        )

    async def ask(
        self,
        thread_id: str,
        text: str,
        *,
        preset: Request | None = None,
        approve: ApprovalHandler | None = None,
    ) -> TurnResult:
        return await self._drive(thread_id, {"text": text, "preset": preset}, approve)

    async def resume(self, thread_id: str, *, approve: ApprovalHandler | None = None) -> TurnResult:
        """Finish what the thread was doing when its last run stopped (or say it is done)."""
        snapshot = await self.graph.aget_state(self._config(thread_id))
        if not snapshot.values:
            return TurnResult(
                thread_id, f"There is no thread {thread_id!r}.", {"error": "no such thread"}
            )
        if not snapshot.next:
            values = snapshot.values
            return TurnResult(thread_id, values.get("answer", ""), values.get("facts", {}))
        return await self._drive(thread_id, None, approve)

    async def _drive(
        self, thread_id: str, payload: dict[str, Any] | None, approve: ApprovalHandler | None
    ) -> TurnResult:
        config, context = self._config(thread_id), self._context(thread_id)
        graph_input: Any = payload
        while True:
            pending = await self._pending_interrupt(config) if graph_input is None else None
            if pending is None:
                async for item in self.graph.astream(
                    graph_input, config, context=context, stream_mode=["custom", "updates"]
                ):
                    mode, chunk = cast(tuple[str, Any], item)  # (mode, chunk) for a mode list
                    if mode == "custom":
                        self.on_event(chunk)
                    elif "__interrupt__" in chunk:
                        pending = chunk["__interrupt__"][0].value
            if pending is None:
                break
            decision = approve(pending) if approve else None
            if decision is None:
                return TurnResult(
                    thread_id,
                    _approval_text(pending, thread_id),
                    {"phase": None, "pending_approval": pending, "thread_id": thread_id},
                    pending_approval=pending,
                )
            graph_input = Command(resume=decision)
        values = (await self.graph.aget_state(config)).values
        return TurnResult(thread_id, values.get("answer", ""), values.get("facts", {}))

    async def _pending_interrupt(self, config: RunnableConfig) -> dict[str, Any] | None:
        snapshot = await self.graph.aget_state(config)
        for task in snapshot.tasks:
            if task.interrupts:
                return task.interrupts[0].value
        return None


def _approval_text(pending: dict[str, Any], thread_id: str) -> str:
    estimate = pending.get("estimate", {})
    return (
        f"Approval needed: {'; '.join(pending.get('reasons', []))}. Estimate "
        f"{money(estimate.get('cost_usd', 0))} over {estimate.get('duration_s', 0):.0f}s "
        f"({estimate.get('basis', '')}). Run `trainops resume {thread_id} --approve` to launch, "
        f"or `--deny` to drop it."
    )
