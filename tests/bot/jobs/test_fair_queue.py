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


def test_a_user_served_from_an_empty_queue_waits_for_those_not_yet_served():
    queue: FairQueue[Item] = FairQueue()
    queue.push(Item(1, "bob0"))
    assert [i.name for i in queue.next_batch(1)] == ["bob0"]  # runs at once: bob's turn
    queue.push(Item(1, "bob1"))  # bob's queue was empty meanwhile
    queue.push(Item(2, "carol0"))
    queue.push(Item(3, "dave0"))
    assert [i.name for i in queue.service_order()] == ["carol0", "dave0", "bob1"]
    # Long after (everyone served since), a returning user is not held back.
    assert [i.name for i in queue.next_batch(3)] == ["carol0", "dave0", "bob1"]
    queue.push(Item(2, "carol1"))
    queue.push(Item(1, "bob2"))
    assert [i.name for i in queue.service_order()] == ["carol1", "bob2"]


def test_a_newcomer_is_not_owed_the_turns_of_a_batch_that_ran_alone():
    queue: FairQueue[Item] = FairQueue()
    for n in range(8):
        queue.push(Item(1, f"a{n}"))
    assert len(queue.next_batch(4)) == 4  # nobody else waited: a0..a3 in one call
    queue.push(Item(2, "b0"))
    queue.push(Item(2, "b1"))
    # b0 comes next, then the two alternate: b is not given four turns in a row.
    assert [i.name for i in queue.service_order()][:4] == ["b0", "a4", "b1", "a5"]


def test_batch_looks_past_an_incompatible_head():
    queue: FairQueue[Item] = FairQueue()
    queue.push(Item(1, "a0", batch_key="x"))
    queue.push(Item(2, "b0", batch_key="y"))
    queue.push(Item(2, "b1", batch_key="x"))
    queue.push(Item(3, "c0", batch_key="y"))
    assert [i.name for i in queue.service_order()] == ["a0", "b0", "c0", "b1"]
    assert [i.name for i in queue.next_batch(4)] == ["a0", "b1"]
    # b0 keeps its place: the batch took a later turn of b's, not b0's.
    assert [i.name for i in queue.service_order()] == ["b0", "c0"]


def test_a_job_given_back_gets_its_place_back():
    queue: FairQueue[Item] = FairQueue()
    for item in [Item(1, "a0"), Item(2, "b0"), Item(3, "c0")]:
        queue.push(item)
    [(a0, turn)] = queue.take_batch(1)
    queue.push(Item(1, "a1"))
    queue.push(a0, turn)  # the engine crashed under it: back where it was
    assert [i.name for i in queue.service_order()] == ["a0", "b0", "c0", "a1"]


def test_batches_are_cut_to_a_preferred_size():
    queue: FairQueue[Item] = FairQueue()
    for n in range(7):
        queue.push(Item(n, f"u{n}"))
    assert len(queue.next_batch(8, preferred_sizes={1, 2, 4, 8})) == 4
    assert len(queue.next_batch(8, preferred_sizes={1, 2, 4, 8})) == 2
    queue.push(Item(9, "big", size=3))
    # No start of [u6, big] makes a preferred size: the batch is left whole.
    assert [i.name for i in queue.next_batch(8, preferred_sizes={2, 8})] == ["u6", "big"]


@given(
    st.lists(st.tuples(st.integers(0, 4), st.integers(1, 3), st.sampled_from("xy")), max_size=40),
    st.integers(1, 6),
)
def test_every_item_is_served_once_in_turn_and_nobody_moves_back(pushes, max_size):
    queue: FairQueue[Item] = FairQueue()
    items = [Item(o, f"{n}", s, k) for n, (o, s, k) in enumerate(pushes)]
    for item in items:
        queue.push(item)
    served = []
    while True:
        before = {i.name: n for n, i in enumerate(queue.service_order())}
        batch = queue.next_batch(max_size)
        if not batch:
            break
        assert before[batch[0].name] == 0  # the next in turn leads every batch
        assert len({i.batch_key for i in batch}) == 1
        assert sum(i.size for i in batch) <= max(max_size, batch[0].size)
        after = {i.name: n for n, i in enumerate(queue.service_order())}
        assert all(after[name] <= before[name] for name in after)
        served.extend(batch)
    assert sorted(served, key=lambda i: int(i.name)) == items
    # An owner's alike jobs run in the order asked; a later job of another kind or size may
    # join a batch before an earlier one that could not (which keeps its place).
    for alike in {(i.owner, i.batch_key, i.size) for i in items}:
        mine = [int(i.name) for i in served if (i.owner, i.batch_key, i.size) == alike]
        assert mine == sorted(mine)
