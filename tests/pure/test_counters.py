"""The node's counters: durations appended on the hot path and folded later
count exactly as if each had been observed when it happened (counters.py
Rule 3)."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from shoal.runtime.counters import BUCKETS, GROUP, KINDS, OK, REMOTE, Counters

seconds = st.floats(min_value=0.0, max_value=20.0, allow_nan=False)
near_bounds = st.sampled_from([*BUCKETS, *(math.nextafter(b, 0) for b in BUCKETS),
                               *(math.nextafter(b, 1e9) for b in BUCKETS)])


@given(st.lists(st.one_of(seconds, near_bounds), max_size=300),
       st.lists(st.integers(min_value=0, max_value=300), max_size=4))
def test_folded_durations_count_as_observed_ones(durations: list[float],
                                                 cuts: list[int]) -> None:
    observed, folded = Counters(), Counters()
    for d in durations:
        observed.observe(REMOTE, OK, d)
    start = 0
    for cut in sorted(min(c, len(durations)) for c in cuts):  # folds between appends
        folded.succeeded[REMOTE].extend(durations[start:cut])
        folded.fold()
        start = cut
    folded.succeeded[REMOTE].extend(durations[start:])
    folded.fold()
    assert folded.calls == observed.calls
    assert folded.durations == observed.durations
    assert math.isclose(folded.sums[REMOTE], observed.sums[REMOTE], rel_tol=1e-9,
                        abs_tol=1e-9)
    assert folded.succeeded == [[] for _ in KINDS]


def test_fold_adds_to_what_was_counted_before_and_touches_only_its_kind() -> None:
    counters = Counters()
    counters.observe(REMOTE, OK, 0.002)
    counters.observe(GROUP, OK, 0.5)
    counters.succeeded[REMOTE] += [0.00005, 0.002, 30.0]
    counters.fold()
    assert counters.calls[REMOTE][OK] == 4
    assert counters.calls[GROUP][OK] == 1
    row = counters.durations[REMOTE]
    assert row[0] == 1 and row[BUCKETS.index(0.0025)] == 2 and row[-1] == 1
    assert sum(row) == 4
    assert math.isclose(counters.sums[REMOTE], 0.002 * 2 + 0.00005 + 30.0)
    assert sum(counters.durations[GROUP]) == 1
    counters.fold()  # nothing waits: nothing changes
    assert counters.calls[REMOTE][OK] == 4 and sum(counters.durations[REMOTE]) == 4

