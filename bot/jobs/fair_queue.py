"""Per-user FIFO queues served round-robin, with batching of compatible jobs.

Pure data structure, no I/O: the scheduler owns one and asks it what to run next.

Turns are counted in rounds. Each queued job holds one turn of its owner's: a round, and a
stamp that orders turns within a round (the turn given out first goes first). A user's queued
jobs hold consecutive rounds, starting at the current round, or at the round after their last
turn if that is later. A turn is used when its job is taken to run, and it stays used while
the job runs: a user whose job is running waits behind everyone not yet served in that round,
even if their own queue was empty meanwhile.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
from collections.abc import Callable, Collection, Hashable, Iterator
from typing import Generic, Protocol, TypeVar


class Queueable(Protocol):
    @property
    def owner(self) -> int: ...

    @property
    def sequence(self) -> int: ...  # the order the owner asked in (the job id)

    @property
    def size(self) -> int: ...  # images it makes

    @property
    def batch_key(self) -> Hashable: ...


T = TypeVar("T", bound=Queueable)
Turn = tuple[int, int]  # (round, stamp): served in this order


class FairQueue(Generic[T]):
    """Round-robin over users; each user's jobs take their turns in the order they asked.

    One user with twenty jobs and another with one: the second user's job runs second, not
    twenty-first, and it still does when the first user's first job started at once.
    """

    def __init__(self) -> None:
        # Each owner's queued items by sequence, and their turns, ascending: the i-th item
        # takes the i-th turn, so an owner's items run in the order they asked.
        self._queues: dict[int, list[T]] = {}
        self._turns: dict[int, list[Turn]] = {}
        # The round of each owner's latest used turn, kept after their queue empties (the job
        # may still be running); forgotten once it is behind the current round.
        self._last_used: dict[int, int] = {}
        self._latest_round = 0  # the latest round any turn was used in
        self._stamps = itertools.count()
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __contains__(self, item: object) -> bool:
        return any(item in q for q in self._queues.values())

    def push(self, item: T, turn: Turn | None = None) -> None:
        """Queue ``item`` among its owner's jobs by sequence, giving its owner one more turn.

        Commands run concurrently, so jobs can arrive a little out of order. ``turn``: the
        turn ``item`` was taken with (``take_batch``), for a job that goes back to the queue
        without having run: it gets its place back, ahead of its owner's later jobs.
        """
        owner = item.owner
        first = max(self._current_round(), self._last_used.get(owner, -1) + 1)
        queue = self._queues.setdefault(owner, [])
        turns = self._turns.setdefault(owner, [])
        bisect.insort(queue, item, key=lambda queued: queued.sequence)
        if turn is not None:
            bisect.insort(turns, turn)
        else:
            turns.append((max(first, turns[-1][0] + 1) if turns else first, next(self._stamps)))
        self._count += 1

    def remove(self, predicate: Callable[[T], bool]) -> T | None:
        """Take out the first queued item for which ``predicate(item)`` is true.

        Its owner's later items move up into its turn: a cancelled job costs its owner nothing.
        """
        for owner, queue in self._queues.items():
            for index, item in enumerate(queue):
                if predicate(item):
                    del queue[index]
                    del self._turns[owner][-1]
                    self._count -= 1
                    self._forget_if_empty(owner)
                    return item
        return None

    def items_for(self, owner: int) -> list[T]:
        return list(self._queues.get(owner, ()))

    def service_order(self) -> Iterator[T]:
        """Every queued item in the order it will be served, batching aside."""
        return (item for _, item in self._in_turn_order())

    def next_batch(self, max_size: int, preferred_sizes: Collection[int] = ()) -> list[T]:
        """``take_batch``'s items."""
        return [item for item, _ in self.take_batch(max_size, preferred_sizes)]

    def take_batch(
        self, max_size: int, preferred_sizes: Collection[int] = ()
    ) -> list[tuple[T, Turn]]:
        """Take the next item in turn plus compatible ones, up to ``max_size`` images, each
        with the turn it used.

        Companions are the following items in turn order with the same batch key, wherever
        they are in their owner's queue: an owner whose next job does not fit can still have a
        later one join. Each item taken uses its own turn, so joining a batch is a turn like
        any other, and no item left queued moves back. When ``preferred_sizes`` is given (the
        engine's compiled batch sizes), the batch is cut to the longest start of it whose
        image count is one of them, if there is one.
        """
        chosen: list[tuple[Turn, T]] = []
        size = 0
        for turn, item in self._in_turn_order():
            if chosen and (item.batch_key != chosen[0][1].batch_key or size + item.size > max_size):
                continue
            chosen.append((turn, item))
            size += item.size
            if size >= max_size:
                break
        if preferred_sizes and size not in preferred_sizes:
            totals = itertools.accumulate(item.size for _, item in chosen)
            fitting = [n for n, total in enumerate(totals, 1) if total in preferred_sizes]
            if fitting:
                del chosen[fitting[-1] :]
        for turn, item in chosen:
            self._use(item.owner, turn)
        self._forget_used_turns()
        return [(item, turn) for turn, item in chosen]

    def _in_turn_order(self) -> Iterator[tuple[Turn, T]]:
        # Each owner's turns are ascending already: a merge, not a sort.
        per_owner = (
            zip(self._turns[owner], queue, strict=True) for owner, queue in self._queues.items()
        )
        return heapq.merge(*per_owner, key=lambda pair: pair[0])

    def _current_round(self) -> int:
        """The round a newcomer's first job joins: the latest round served, unless someone
        still waits for a turn of an earlier one (jobs that joined a batch from far back in
        their queue must not push newcomers behind everyone else)."""
        waiting = min((turns[0][0] for turns in self._turns.values()), default=None)
        return self._latest_round if waiting is None else min(self._latest_round, waiting)

    def _use(self, owner: int, turn: Turn) -> None:
        index = self._turns[owner].index(turn)
        del self._turns[owner][index]
        del self._queues[owner][index]
        self._count -= 1
        self._last_used[owner] = max(self._last_used.get(owner, turn[0]), turn[0])
        self._latest_round = max(self._latest_round, turn[0])
        self._forget_if_empty(owner)

    def _forget_used_turns(self) -> None:
        # A turn used before the current round no longer holds its owner back.
        current = self._current_round()
        self._last_used = {o: r for o, r in self._last_used.items() if r >= current}

    def _forget_if_empty(self, owner: int) -> None:
        if owner in self._queues and not self._queues[owner]:
            del self._queues[owner]
            del self._turns[owner]
