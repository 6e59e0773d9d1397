"""The security suite's platform: the five services, in-process, on the session's real stack.

One platform for the whole package (building it takes the time of a few cases through the whole
chain); each test that changes something takes its own case or resource from it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from .world import World, running_world

# Routed cases for the tests that change a referral (accept, decline, ask, opinion, fuzzing...;
# the resumable opinion uploads take seven).
ROUTED_POOL = 58


@pytest.fixture(scope="package")
async def world(local_stack, tmp_path_factory) -> AsyncIterator[World]:
    async with running_world(
        local_stack, tmp_path_factory.mktemp("security"), routed=ROUTED_POOL
    ) as built:
        yield built
