"""The virtual clock: time passes only when every task waits, straight to the next
event; executor work runs inline; a run that can never finish raises instead of hanging."""

import asyncio
import time

import pytest

from atts.sim import clock


def test_time_jumps_to_the_next_event_and_costs_no_real_time():
    order = []

    async def sleeper(d):
        await asyncio.sleep(d)
        order.append((d, asyncio.get_running_loop().time()))

    async def main():
        await asyncio.gather(sleeper(3600), sleeper(0.5), sleeper(100))
        return await asyncio.get_running_loop().run_in_executor(None, sum, [1, 2])

    t0 = time.perf_counter()
    result, virtual = clock.run(main())
    assert time.perf_counter() - t0 < 2.0
    assert result == 3 and virtual == 3600
    assert order == [(0.5, 0.5), (100, 100), (3600, 3600)]


def test_ready_work_runs_before_time_advances():
    async def main():
        loop = asyncio.get_running_loop()
        stamps = []
        for _ in range(1000):
            await asyncio.sleep(0)
            stamps.append(loop.time())
        return stamps

    stamps, virtual = clock.run(main())
    assert set(stamps) == {0.0} and virtual == 0.0


def test_deadlock_raises():
    async def main():
        await asyncio.Event().wait()

    with pytest.raises(clock.VirtualDeadlock):
        clock.run(main())


def test_a_failing_callback_ends_the_run():
    def boom():
        raise ValueError("server model bug")

    async def main():
        asyncio.get_running_loop().call_later(5, boom)
        await asyncio.Event().wait()

    with pytest.raises(ValueError, match="server model bug"):
        clock.run(main())
