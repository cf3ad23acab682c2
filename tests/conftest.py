"""Fixtures shared by every test directory. Keep it small."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import shoal


@pytest.fixture
async def node() -> AsyncIterator[shoal.Node]:
    """A running node on its own (a private in-memory store, no listener),
    stopped (G4) when the test ends."""
    async with shoal.Node("t", store="memory://", seed=1, drain_timeout=2.0) as running:
        yield running
