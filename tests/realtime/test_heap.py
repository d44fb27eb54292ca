"""settle_heap: what realtime_serve does to the garbage collector once it listens."""

from __future__ import annotations

import gc

from realtime.daphne.heap import THRESHOLDS, settle_heap


def test_start_up_objects_leave_the_collectors_sight_and_collections_are_spaced() -> None:
    before = gc.get_threshold()
    try:
        start_up = object.__new__(type("StartUp", (), {}))
        settle_heap()
        assert gc.get_threshold() == THRESHOLDS
        assert gc.get_freeze_count() > 0
        # In the permanent generation: no collection walks it again.
        assert start_up not in gc.get_objects(generation=2)
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
