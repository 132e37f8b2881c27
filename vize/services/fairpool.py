"""A bounded thread pool that shares its workers fairly between users.

A plain ``ThreadPoolExecutor`` is first come, first served: one client that sends ten costly
images in two requests fills every worker, and another user's 30-px image waits behind all of
them. Here each submitted task carries a key (the user) and a priority:

* Interactive work (classification) always goes before background work (embedding after
  uploads, training chunks), so a burst of uploads or a retrain cannot starve serving.
* Within a priority, users are served round-robin, one task each in turn.
* A costly task (``capped``: e.g. a classification of large PNG scans) starts only while its
  user holds fewer than ``per_key`` workers, so with two workers a second user always finds
  one free (or about to be) however many costly images the first one sends. Ordinary tasks
  take any idle worker: one user alone still uses every core.
  Background work takes every idle worker while nobody is being served (a training uses all
  cores), but a queued interactive task goes first as soon as a worker frees up. While
  interactive work has arrived within ``INTERACTIVE_WINDOW``, background work holds at most
  ``workers - 1`` workers: a classification never waits for a background task to end
  (with uploads streaming in, the background embedding otherwise filled every gap between
  requests and the next request waited for a chunk: bench/load_bench.py).

The pool is an ``Executor``: ``loop.run_in_executor(pool, fn)`` works and counts as anonymous
interactive work (the shared key ``None``)."""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Hashable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any


class Priority(IntEnum):
    INTERACTIVE = 0  # someone is waiting for the answer
    BACKGROUND = 1  # embeddings after uploads, training chunks


INTERACTIVE_WINDOW = 0.5  # seconds since the last interactive task that count as "serving"


@dataclass
class _Task:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    key: Hashable
    capped: bool = False
    priority: Priority = Priority.INTERACTIVE
    future: Future[Any] = field(default_factory=Future)


class FairPool(Executor):
    def __init__(
        self, workers: int, *, per_key: int | None = None, name: str = "vize-fair"
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.workers = workers
        # Leave one worker for everybody else when there are several.
        self.per_key = per_key if per_key is not None else max(1, workers - 1)
        self._cond = threading.Condition()
        self._queues: dict[Priority, OrderedDict[Hashable, deque[_Task]]] = {
            p: OrderedDict() for p in Priority
        }
        self._running: Counter[Hashable] = Counter()
        self._busy: Counter[Priority] = Counter()
        self._last_interactive = -float("inf")
        self._shutdown = False
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    # -- Executor --------------------------------------------------------------------------
    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        return self.submit_for(None, Priority.INTERACTIVE, fn, *args, **kwargs)

    def submit_for(
        self,
        key: Hashable,
        priority: Priority,
        fn: Callable[..., Any],
        /,
        *args: Any,
        capped: bool = False,
        **kwargs: Any,
    ) -> Future[Any]:
        """Queue ``fn(*args, **kwargs)`` for ``key`` (a user); ``capped``: a costly task, which
        waits while the key holds ``per_key`` workers."""
        task = _Task(fn, args, kwargs, key, capped, priority=priority)
        with self._cond:
            if self._shutdown:
                raise RuntimeError("cannot schedule new work after shutdown")
            if priority is Priority.INTERACTIVE:
                self._last_interactive = time.monotonic()
            queue = self._queues[priority]
            queue.setdefault(key, deque()).append(task)
            self._cond.notify()
        return task.future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._cond:
            self._shutdown = True
            if cancel_futures:
                for queue in self._queues.values():
                    for tasks in queue.values():
                        for task in tasks:
                            task.future.cancel()
                    queue.clear()
            self._cond.notify_all()
        if wait:
            for thread in self._threads:
                if thread is not threading.current_thread():
                    thread.join()

    # -- introspection (metrics, tests) ---------------------------------------------------
    def queued(self, priority: Priority | None = None) -> int:
        with self._cond:
            queues = [self._queues[priority]] if priority is not None else self._queues.values()
            return sum(len(tasks) for queue in queues for tasks in queue.values())

    # -- workers -------------------------------------------------------------------------
    def _next(self) -> _Task | None:
        """The next task to run (lock held): highest priority first, then users in turn,
        skipping a user whose next task is costly while they hold their share of workers."""
        for priority in Priority:
            queue = self._queues[priority]
            if priority is Priority.BACKGROUND and queue and self._serving():
                continue
            for key in list(queue):
                tasks = queue[key]
                if tasks[0].capped and self._running[key] >= self.per_key:
                    continue  # leave the other workers to other users
                task = tasks.popleft()
                if tasks:
                    queue.move_to_end(key)  # round-robin: this user goes to the back
                else:
                    del queue[key]
                return task
        return None

    def _serving(self) -> bool:
        """Whether background work must leave a worker free (lock held)."""
        recent = time.monotonic() - self._last_interactive < INTERACTIVE_WINDOW
        return recent and self._busy[Priority.BACKGROUND] >= max(1, self.workers - 1)

    def _work(self) -> None:
        while True:
            with self._cond:
                task = self._next()
                while task is None:
                    if self._shutdown and not any(self._queues.values()):
                        return
                    # Background work held back by _serving() may start once the window ends.
                    held = bool(self._queues[Priority.BACKGROUND])
                    self._cond.wait(INTERACTIVE_WINDOW if held else None)
                    task = self._next()
                self._running[task.key] += 1
                self._busy[task.priority] += 1
            try:
                if task.future.set_running_or_notify_cancel():
                    try:
                        task.future.set_result(task.fn(*task.args, **task.kwargs))
                    except BaseException as exc:  # handed to whoever waits on the future
                        task.future.set_exception(exc)
            finally:
                with self._cond:
                    self._busy[task.priority] -= 1
                    self._running[task.key] -= 1
                    if not self._running[task.key]:
                        del self._running[task.key]
                    self._cond.notify_all()
