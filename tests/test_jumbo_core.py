"""A jumbo frame leaves whole or not at all (issue 17): the worker's TX flush, on a TX ring
in memory, with every mix of chain lengths and ring room.  No root needed."""
from itertools import accumulate

from hypothesis import given, settings, strategies as st

from pyxsw import _core, vocab

MAX_FRAGS = vocab.MAX_FRAGS


def dp():
    return _core.Datapath(umem=False, frames=4096)


def test_a_frame_the_ring_has_no_room_for_is_dropped_whole_and_the_ones_before_it_go():
    d = dp()
    # 1 + 6 + 3 + 2 descriptors; 8 free slots: the first two frames (7 descriptors) go
    written, sent, dropped = d.flush_chains([1, 6, 3, 2], room=8)
    assert written == [0, 1, 1, 1, 1, 1, 0] and (sent, dropped) == (2, 2)
    written, sent, dropped = d.flush_chains([6], room=5)
    assert written == [] and (sent, dropped) == (0, 1)
    written, sent, dropped = d.flush_chains([1, 6, 3, 2], room=64)
    assert written == [0, 1, 1, 1, 1, 1, 0, 1, 1, 0, 1, 0] and (sent, dropped) == (4, 0)


def test_a_frame_longer_than_the_egress_device_sends_is_dropped_whole():
    """Zero-copy: a device sends frames of zc-max-segs descriptors at most."""
    written, sent, dropped = dp().flush_chains([1, 6, 3, 2, 1], room=64, segs=3)
    assert written == [0, 1, 1, 0, 1, 0, 0] and (sent, dropped) == (4, 1)


@settings(max_examples=300, deadline=None)
@given(chains=st.lists(st.integers(1, MAX_FRAGS), min_size=1, max_size=12),
       room=st.integers(0, 64))
def test_whole_frames_only_for_any_chains_and_room(chains, room):
    d = dp()
    written, sent, dropped = d.flush_chains(chains, room=room)
    ends = list(accumulate(chains))
    # the frames that went are the longest prefix that fits: every one whole
    fit = sum(1 for e in ends if e <= room)
    assert (sent, dropped) == (fit, len(chains) - fit)
    assert len(written) == (ends[fit - 1] if fit else 0)
    assert written == [o for k in chains[:fit] for o in [1] * (k - 1) + [0]]
    acc = d.accounting()
    assert acc["in_flight"] == 0 and acc["placed"] == acc["frames"], acc
