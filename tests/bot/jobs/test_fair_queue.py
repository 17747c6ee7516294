"""Round-robin fairness and batching of the per-user queues."""

from dataclasses import dataclass, field

from hypothesis import given
from hypothesis import strategies as st

from bot.jobs.fair_queue import FairQueue

_sequence = iter(range(10**9))


@dataclass(frozen=True)
class Item:
    owner: int
    name: str
    size: int = 1
    batch_key: str = "k"
    sequence: int = field(default_factory=lambda: next(_sequence))


def test_one_busy_user_cannot_starve_another():
    queue: FairQueue[Item] = FairQueue()
    for i in range(5):
        queue.push(Item(1, f"a{i}"))
    queue.push(Item(2, "b0"))
    queue.push(Item(3, "c0"))
    order = [queue.next_batch(1)[0].name for _ in range(7)]
    assert order == ["a0", "b0", "c0", "a1", "a2", "a3", "a4"]
    assert len(queue) == 0 and queue.next_batch(4) == []


def test_service_order_predicts_next_batch_order():
    queue: FairQueue[Item] = FairQueue()
    for item in [Item(1, "a0"), Item(1, "a1"), Item(2, "b0"), Item(1, "a2"), Item(3, "c0")]:
        queue.push(item)
    predicted = [i.name for i in queue.service_order()]
    served = [queue.next_batch(1)[0].name for _ in range(5)]
    assert predicted == served == ["a0", "b0", "c0", "a1", "a2"]


def test_batch_takes_compatible_heads_in_turn_up_to_size():
    queue: FairQueue[Item] = FairQueue()
    queue.push(Item(1, "a0", size=2))
    queue.push(Item(1, "a1", size=1))
    queue.push(Item(2, "b0", size=1, batch_key="other"))
    queue.push(Item(3, "c0", size=1))
    queue.push(Item(4, "d0", size=2))
    batch = queue.next_batch(4)
    # a0 first; b0 is incompatible; c0 fits (3); d0 would make 5; then a1 fits (4).
    assert [i.name for i in batch] == ["a0", "c0", "a1"]
    assert [i.name for i in queue.service_order()] == ["b0", "d0"]


def test_joining_a_batch_counts_as_a_turn():
    queue: FairQueue[Item] = FairQueue()
    for item in [Item(1, "a0"), Item(2, "b0"), Item(2, "b1"), Item(3, "c0"), Item(4, "d0")]:
        queue.push(item)
    assert [i.name for i in queue.next_batch(2)] == ["a0", "b0"]
    # User 2 was served as a companion, so users 3 and 4 go before b1.
    assert [i.name for i in queue.service_order()] == ["c0", "d0", "b1"]


def test_jobs_arriving_out_of_order_run_in_the_order_asked_and_retries_go_first():
    queue: FairQueue[Item] = FairQueue()
    retry = Item(1, "retry")
    later = [Item(1, "a0"), Item(1, "a1")]
    queue.push(later[1])
    queue.push(later[0])
    assert [i.name for i in queue.items_for(1)] == ["a0", "a1"]
    queue.push(retry)  # an older job, back after an engine crash
    assert [i.name for i in queue.items_for(1)] == ["retry", "a0", "a1"]
    assert queue.remove(lambda i: i.name == "a0").name == "a0"
    assert queue.remove(lambda i: i.name == "missing") is None
    assert later[1] in queue and later[0] not in queue


@given(
    st.lists(st.tuples(st.integers(0, 4), st.integers(1, 3), st.sampled_from("xy")), max_size=40),
    st.integers(1, 6),
)
def test_every_item_is_served_exactly_once_and_owners_keep_their_order(pushes, max_size):
    queue: FairQueue[Item] = FairQueue()
    items = [Item(o, f"{n}", s, k) for n, (o, s, k) in enumerate(pushes)]
    for item in items:
        queue.push(item)
    served = []
    while batch := queue.next_batch(max_size):
        assert len({i.batch_key for i in batch}) == 1
        assert sum(i.size for i in batch) <= max(max_size, batch[0].size)
        served.extend(batch)
    assert sorted(served, key=lambda i: int(i.name)) == items
    for owner in {i.owner for i in items}:
        mine = [int(i.name) for i in served if i.owner == owner]
        assert mine == sorted(mine)
