"""The fair pool: one user cannot take every worker, serving goes before background work."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future

import pytest

from vize.services.fairpool import FairPool, Priority

WAIT = 5.0


def started(future: Future[object]) -> Future[object]:
    """Wait until a worker has taken the task, so what is queued next is queued behind it."""
    for _ in range(500):
        if future.running():
            return future
        time.sleep(0.01)
    raise AssertionError("the task never started")


@pytest.fixture
def pool() -> Iterator[FairPool]:
    p = FairPool(2, name="test-fair")
    yield p
    p.shutdown(wait=True, cancel_futures=True)


def test_a_second_user_finds_a_free_worker_behind_a_flood_of_costly_tasks(pool: FairPool) -> None:
    gate = threading.Event()
    flood = [
        pool.submit_for("mallory", Priority.INTERACTIVE, gate.wait, WAIT, capped=True)
        for _ in range(6)
    ]
    other = pool.submit_for("alice", Priority.INTERACTIVE, lambda: "done")
    # Answered while every one of mallory's tasks is still blocked or waiting.
    assert other.result(timeout=WAIT) == "done"
    assert sum(f.running() for f in flood) == 1
    gate.set()
    assert all(f.result(timeout=WAIT) for f in flood)


def test_ordinary_tasks_of_one_user_take_every_worker(pool: FairPool) -> None:
    """One user alone uses both cores: only costly tasks are held to a share."""
    both = threading.Barrier(3)
    futures = [pool.submit_for("alice", Priority.INTERACTIVE, both.wait, WAIT) for _ in range(2)]
    both.wait(WAIT)  # both tasks run at the same time, else this times out
    assert all(f.result(timeout=WAIT) is not None for f in futures)


def test_one_user_alone_still_gets_its_share_in_turn(pool: FairPool) -> None:
    results = [pool.submit_for("alice", Priority.INTERACTIVE, lambda i=i: i) for i in range(20)]
    assert [f.result(timeout=WAIT) for f in results] == list(range(20))


def test_interactive_work_goes_before_background_work() -> None:
    pool = FairPool(1, name="test-prio")
    try:
        order: list[str] = []
        gate = threading.Event()
        blocker = pool.submit_for("x", Priority.BACKGROUND, gate.wait, WAIT)
        background = [
            pool.submit_for(f"bg{i}", Priority.BACKGROUND, order.append, f"bg{i}") for i in range(3)
        ]
        classify = pool.submit_for("alice", Priority.INTERACTIVE, order.append, "classify")
        gate.set()
        for f in [blocker, *background, classify]:
            f.result(timeout=WAIT)
        assert order[0] == "classify"
    finally:
        pool.shutdown()


def test_background_work_leaves_a_worker_free_while_serving(pool: FairPool) -> None:
    """Within INTERACTIVE_WINDOW of interactive work, background tasks hold at most one of the
    two workers, so a classification never waits for one to end; then they take both."""
    pool.submit_for("alice", Priority.INTERACTIVE, lambda: None).result(timeout=WAIT)
    gate = threading.Event()
    background = [pool.submit_for("embed", Priority.BACKGROUND, gate.wait, WAIT) for _ in range(2)]
    started(background[0])
    time.sleep(0.1)
    assert not background[1].running()  # held back: serving is going on
    classify = pool.submit_for("bob", Priority.INTERACTIVE, lambda: "answered")
    assert classify.result(timeout=1.0) == "answered"  # a free worker was waiting for it
    started(background[1])  # the window passed without interactive work: both cores again
    gate.set()
    assert all(f.result(timeout=WAIT) for f in background)


def test_background_work_takes_every_worker_when_nobody_is_served(pool: FairPool) -> None:
    both = threading.Barrier(3)
    futures = [pool.submit_for("embed", Priority.BACKGROUND, both.wait, WAIT) for _ in range(2)]
    both.wait(WAIT)  # both run at once (a training uses every core), else this times out
    assert all(f.result(timeout=WAIT) is not None for f in futures)


def test_users_take_turns() -> None:
    pool = FairPool(1, name="test-rr")
    try:
        order: list[str] = []
        gate = threading.Event()
        first = started(pool.submit_for("a", Priority.INTERACTIVE, gate.wait, WAIT))
        futures = [pool.submit_for("a", Priority.INTERACTIVE, order.append, "a") for _ in range(3)]
        futures += [pool.submit_for("b", Priority.INTERACTIVE, order.append, "b") for _ in range(3)]
        gate.set()
        for f in [first, *futures]:
            f.result(timeout=WAIT)
        assert order == ["a", "b", "a", "b", "a", "b"]
    finally:
        pool.shutdown()


def test_errors_reach_the_caller_and_run_in_executor_works(pool: FairPool) -> None:
    def boom() -> None:
        raise ValueError("bad image")

    with pytest.raises(ValueError, match="bad image"):
        pool.submit_for("a", Priority.INTERACTIVE, boom).result(timeout=WAIT)

    async def main() -> int:
        return await asyncio.get_running_loop().run_in_executor(pool, sum, [1, 2, 3])

    assert asyncio.run(main()) == 6


def test_shutdown_cancels_what_waits_and_joins_the_workers() -> None:
    pool = FairPool(1, name="test-stop")
    gate = threading.Event()
    running = started(pool.submit_for("a", Priority.INTERACTIVE, gate.wait, WAIT))
    waiting = pool.submit_for("a", Priority.INTERACTIVE, lambda: 1)
    stopper = threading.Thread(target=pool.shutdown, kwargs={"cancel_futures": True})
    stopper.start()
    gate.set()
    stopper.join(WAIT)
    assert not stopper.is_alive()
    assert running.result(timeout=WAIT) is True
    assert waiting.cancelled()
    assert not any(t.is_alive() for t in threading.enumerate() if t.name.startswith("test-stop"))
    with pytest.raises(RuntimeError):
        pool.submit(lambda: 1)


def test_the_memory_budget_holds_decodes_back_until_there_is_room() -> None:
    from vize.services.budget import MemoryBudget

    budget = MemoryBudget(100)
    entered = threading.Event()
    with budget.reserve(70):

        def second() -> None:
            with budget.reserve(60):
                entered.set()

        waiter = threading.Thread(target=second)
        waiter.start()
        assert not entered.wait(0.2)  # 70 + 60 > 100: waits
        assert budget.used == 70
    assert entered.wait(WAIT)
    waiter.join(WAIT)
    assert budget.used == 0
    with budget.reserve(500):  # alone, larger than the budget: still runs
        assert budget.used == 500
