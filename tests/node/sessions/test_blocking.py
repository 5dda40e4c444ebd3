"""GroupWriter: writes from the loop, several in one transaction, each failing alone."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import pytest

from crypto.batch import BatchRunner
from node.sessions.blocking import GroupWriter, settled
from node.setup.config import NodeConfig
from node.setup.context import NodeContext

INSERT = "INSERT INTO lists (name, kind, version, updated_at) VALUES (?, 'watchlist', 1, 'now')"


def _add_list(node: NodeContext, name: str) -> str:
    store = node.store()
    with store.transaction() as conn:  # a savepoint on the writer thread
        conn.execute(INSERT, (name,))
    return name


def _add_list_then_fail(node: NodeContext, name: str) -> None:
    _add_list(node, name)
    raise RuntimeError("boom")


def _lists(config: NodeConfig) -> list[str]:
    conn = sqlite3.connect(config.store_path)
    try:
        return [name for (name,) in conn.execute("SELECT name FROM lists ORDER BY name")]
    finally:
        conn.close()


def test_a_failing_write_fails_alone(node: NodeConfig) -> None:
    context = NodeContext.load(node.node_dir, BatchRunner())
    writer = GroupWriter(context)
    held = threading.Event()

    async def main() -> list[object]:
        first = writer.submit(held.wait)  # holds the thread while the group is queued
        group = [
            writer.submit(_add_list, context, "a"),
            writer.submit(_add_list_then_fail, context, "b"),
            writer.submit(_add_list, context, "c"),
        ]
        held.set()
        await settled(first)
        return await asyncio.gather(*group, return_exceptions=True)

    try:
        a, b, c = asyncio.run(main())
    finally:
        writer.close()
    assert (a, c) == ("a", "c")
    assert isinstance(b, RuntimeError)
    assert _lists(node) == ["a", "c"]


def test_close_writes_what_is_queued_then_refuses(node: NodeConfig) -> None:
    context = NodeContext.load(node.node_dir, BatchRunner())
    writer = GroupWriter(context, max_group=2)

    async def main() -> None:
        writes = [writer.submit(_add_list, context, name) for name in "abcde"]
        await asyncio.to_thread(writer.close)
        assert all(write.done() for write in writes)  # settled by the time they are awaited
        await asyncio.gather(*writes)
        with pytest.raises(RuntimeError, match="closed"):
            writer.submit(_add_list, context, "f")

    asyncio.run(main())
    assert _lists(node) == ["a", "b", "c", "d", "e"]
