"""Per-user FIFO queues served round-robin, with batching of compatible jobs.

Pure data structure, no I/O: the scheduler owns one and asks it what to run next.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Iterator
from typing import Generic, Protocol, TypeVar


class Queueable(Protocol):
    @property
    def owner(self) -> int: ...

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
        self._queues: OrderedDict[int, deque[T]] = OrderedDict()
        # Users in the order they will next be served.
        self._order: deque[int] = deque()

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def __contains__(self, item: object) -> bool:
        return any(item in q for q in self._queues.values())

    def push(self, item: T, *, front: bool = False) -> None:
        """Queue ``item`` behind its owner's other jobs (``front``: ahead of them, for retries)."""
        queue = self._queues.get(item.owner)
        if queue is None:
            queue = self._queues[item.owner] = deque()
            self._order.append(item.owner)
        if front:
            queue.appendleft(item)
        else:
            queue.append(item)

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

        Companions are taken in the same round-robin order, at most one per user per round,
        so batching never lets one user jump ahead of another's earlier turn.
        """
        if not self._order:
            return []
        first = self._queues[self._order[0]].popleft()
        batch, size = [first], first.size
        # The first user goes to the back of the line before companions are picked, so their
        # next job is considered after everyone else's head.
        self._order.rotate(-1)
        # Pass over users in turn order; in each pass a user offers only their queue's head.
        progressed = True
        while progressed and size < max_size:
            progressed = False
            for owner in list(self._order):
                queue = self._queues[owner]
                if not queue:
                    continue
                head = queue[0]
                if head.batch_key == first.batch_key and size + head.size <= max_size:
                    batch.append(queue.popleft())
                    size += head.size
                    progressed = True
        for owner in {item.owner for item in batch}:
            self._forget_if_empty(owner)
        return batch

    def _forget_if_empty(self, owner: int) -> None:
        if owner in self._queues and not self._queues[owner]:
            del self._queues[owner]
            self._order.remove(owner)
