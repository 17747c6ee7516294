"""Per-user FIFO queues served round-robin, with batching of compatible jobs.

Pure data structure, no I/O: the scheduler owns one and asks it what to run next.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Iterator
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


class FairQueue(Generic[T]):
    """Round-robin over users; each user's own jobs run in the order they asked.

    One user with twenty jobs and another with one: the second user's job runs second, not
    twenty-first.
    """

    def __init__(self) -> None:
        self._queues: OrderedDict[int, list[T]] = OrderedDict()
        # Users in the order they will next be served.
        self._order: deque[int] = deque()

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def __contains__(self, item: object) -> bool:
        return any(item in q for q in self._queues.values())

    def push(self, item: T) -> None:
        """Queue ``item`` among its owner's jobs by sequence.

        Commands run concurrently, so jobs can arrive a little out of order; a retried job
        goes back ahead of its owner's later ones.
        """
        queue = self._queues.get(item.owner)
        if queue is None:
            queue = self._queues[item.owner] = []
            self._order.append(item.owner)
        bisect.insort(queue, item, key=lambda queued: queued.sequence)

    def remove(self, predicate: Callable[[T], bool]) -> T | None:
        """Take out the first queued item for which ``predicate(item)`` is true."""
        for owner, queue in self._queues.items():
            for item in queue:
                if predicate(item):
                    queue.remove(item)
                    self._forget_if_empty(owner)
                    return item
        return None

    def items_for(self, owner: int) -> list[T]:
        return list(self._queues.get(owner, ()))

    def service_order(self) -> Iterator[T]:
        """Every queued item in the order it will be served, batching aside."""
        cursors = {owner: iter(queue) for owner, queue in self._queues.items()}
        order = deque(self._order)
        while order:
            owner = order.popleft()
            item = next(cursors[owner], None)
            if item is not None:
                yield item
                order.append(owner)

    def next_batch(self, max_size: int) -> list[T]:
        """Take the next job in turn plus compatible jobs, up to ``max_size`` images.

        Companions are the heads of the following users' queues, in turn order, at most one
        per user per pass. Everyone served goes to the back of the line, so joining a batch
        is a turn like any other and nobody is served twice while another waits.
        """
        if not self._order:
            return []
        first_owner = self._order[0]
        first = self._queues[first_owner].pop(0)
        batch, size, served = [first], first.size, [first_owner]
        # Passes over the others in turn order, the first user last: spare room goes to them
        # only after everyone else's head was considered.
        rotation = [*list(self._order)[1:], first_owner]
        progressed = True
        while progressed and size < max_size:
            progressed = False
            for owner in rotation:
                queue = self._queues[owner]
                head = queue[0] if queue else None
                if head and head.batch_key == first.batch_key and size + head.size <= max_size:
                    batch.append(queue.pop(0))
                    size += head.size
                    served.append(owner)
                    progressed = True
        for owner in dict.fromkeys(served):
            self._order.remove(owner)
            if self._queues[owner]:
                self._order.append(owner)
            else:
                del self._queues[owner]
        return batch

    def _forget_if_empty(self, owner: int) -> None:
        if owner in self._queues and not self._queues[owner]:
            del self._queues[owner]
            self._order.remove(owner)
