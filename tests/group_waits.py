"""A wait the node tests share: until a node's view of a group holds
exactly so many members, woken by the group's events (no polling)."""

from __future__ import annotations

import asyncio

import shoal


async def members_seen(node: shoal.Node, group: str, count: int, timeout: float) -> None:
    """Wait, at most ``timeout`` seconds, until ``node`` sees exactly
    ``count`` members of ``group`` (raises ``TimeoutError`` otherwise)."""
    sub = node.groups.subscribe(group)
    try:
        async with asyncio.timeout(timeout):
            while len(node.groups.get_members(group)) != count:
                await sub.get()
    finally:
        sub.close()
