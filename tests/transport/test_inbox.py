"""The inbox (chargepoint.transport.mailbox.Inbox): inbound frames in one buffer allocated
once, written by the network thread, read by the engine."""
from hypothesis import given, settings
from hypothesis import strategies as st

from chargepoint.ocpp.framing import MAX_FRAME
from chargepoint.transport.mailbox import Inbox


def frame(i, n):
    return bytes((i + k) % 251 for k in range(n))


def test_frames_come_out_in_order_each_freed_by_the_next_get():
    box = Inbox(4, 4096)
    assert box.put(b"one") and box.put(b"two", stale=True)
    assert len(box) == 2 and box.bytes == 6
    assert box.get() == (b"one", False)
    assert len(box) == 1 and box.bytes == 3  # the one being read no longer counts
    assert box.get() == (b"two", True)
    assert box.get() is None and len(box) == 0


def test_a_frame_is_read_into_the_room_it_was_given_and_taken_in_place():
    box = Inbox(4, 4096)
    view = box.reserve(5)
    view[:] = b"hello"
    assert box.put(view)
    assert box.get() == (b"hello", False)


def test_the_head_of_an_oversized_frame_comes_with_its_size():
    box = Inbox(4, 4096)
    assert box.put('[2,"a","Heartbeat",'.encode(), size=200000)
    assert box.get() == ('[2,"a","Heartbeat",', False, 200000)


def test_the_count_and_bytes_are_bounded_and_an_empty_inbox_takes_any_frame():
    box = Inbox(2, 100)
    assert box.put(b"x" * MAX_FRAME)  # empty: any frame up to the limit
    assert not box.put(b"y")  # over its bytes
    assert box.full()
    box.get()
    assert not box.put(b"a")  # no room beside the frame being read: its whole buffer
    assert box.get() is None
    assert box.put(b"a") and box.put(b"b") and not box.put(b"c")  # two at most
    assert box.reserve(1) is None


def test_a_record_that_does_not_fit_before_the_end_starts_again_at_0():
    box = Inbox(24, 4096)
    for i in range(3):
        assert box.put(frame(i, 1300))
    assert box.get()[0] == frame(0, 1300)
    assert box.get()[0] == frame(1, 1300)  # the first is free: room at the start
    assert box.put(frame(3, 1300))  # does not fit after the third: goes to 0
    assert [box.get()[0] for _ in range(2)] == [frame(2, 1300), frame(3, 1300)]
    assert box.get() is None


def test_the_frame_being_read_is_never_written_over():
    box = Inbox(24, 4096)
    assert box.put(frame(0, 4000))
    data, _ = box.get()
    assert box.reserve(300) is None  # no room beside it until the engine is done with it
    assert box.get() is None  # done: freed
    assert box.reserve(4096) is not None


def test_the_engine_frees_the_frame_it_is_through_with():
    box = Inbox(24, 4096)
    assert box.put(frame(0, 4000))
    box.get()
    box.free()  # done with it: also without a receive() (the outbox full, say)
    assert box.reserve(4096) is not None and len(box) == 0
    assert box.get() is None


def test_a_websocket_inbox_is_full_without_room_for_the_largest_message():
    box = Inbox(24, 4096, need=MAX_FRAME)
    assert not box.full()
    box.put(b"[3,\"1\",{}]")
    assert box.full()  # the next message's size is known only once read
    box.get()
    assert not box.full()  # the one being read is small: room for the largest beside it


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.integers(0, MAX_FRAME), st.none()), max_size=80))
def test_whatever_the_sizes_frames_come_out_whole_and_in_order(ops):
    """None: the engine takes one; a size: the thread puts a frame of it (in place or copied,
    in turn). What it takes comes out as it went in; an empty inbox takes any frame."""
    box = Inbox(24, 4096)
    queued = []
    for i, op in enumerate(ops):
        if op is None:
            got = box.get()
            assert got == (queued.pop(0) if queued else None)
            continue
        data = frame(i, op)
        stale = i % 3 == 0
        if i % 2:
            view = box.reserve(op)
            took = view is not None
            if took:
                view[:] = data
                assert box.put(view, stale)
        else:
            took = box.put(data, stale)
        if not queued and not box._out:
            assert took
        if took:
            queued.append((data, stale))
        assert len(box) == len(queued) <= 24
