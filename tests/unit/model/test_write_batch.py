"""WriteBatch's public ways to append samples all give the same columns."""

from __future__ import annotations

import pytest

from rtpm.model.labels import Labels
from rtpm.model.samples import WriteBatch

A: Labels = (("__name__", "a"),)
B: Labels = (("__name__", "b"),)
C: Labels = (("__name__", "c"),)


def _columns(batch: WriteBatch) -> list[tuple[Labels, int, float]]:
    return [(batch.series[r], t, v) for r, t, v in zip(batch.refs, batch.ts_ms, batch.values, strict=True)]


def _by_add(samples: list[tuple[Labels, int, float]], start: WriteBatch | None = None) -> WriteBatch:
    batch = start or WriteBatch("t")
    for labels, t, v in samples:
        batch.add(labels, t, v)
    return batch


SAMPLES = [(A, 1, 1.0), (B, 1, 2.0), (A, 2, 3.0), (C, 1, 4.0), (B, 2, 5.0)]


@pytest.mark.parametrize(
    "samples",
    [
        pytest.param(SAMPLES, id="repeated-series"),
        pytest.param([(A, 1, 1.0), (B, 1, 2.0), (C, 1, 3.0)], id="all-distinct"),
        pytest.param([], id="empty"),
    ],
)
@pytest.mark.parametrize("prefilled", [False, True])
def test_append_columns_is_add_per_sample(samples: list[tuple[Labels, int, float]], prefilled: bool) -> None:
    expected = _by_add(samples, _by_add([(B, 0, 0.0)]) if prefilled else None)
    batch = _by_add([(B, 0, 0.0)]) if prefilled else WriteBatch("t")
    batch.append_columns([s[0] for s in samples], [s[1] for s in samples], [s[2] for s in samples])
    assert _columns(batch) == _columns(expected)
    assert batch.series == expected.series
    # the index stays usable: later adds find the series appended by columns
    batch.add(A, 9, 9.0)
    expected.add(A, 9, 9.0)
    assert batch.series == expected.series and batch.refs == expected.refs


def test_extend_and_append_refs() -> None:
    batch = WriteBatch("t")
    batch.extend(A, [1, 2, 3], [1.0, 2.0, 3.0])
    ref_b = batch.ref(B)
    batch.append_refs([ref_b, batch.ref(A)], [5, 6], [5.0, 6.0])
    assert _columns(batch) == [(A, 1, 1.0), (A, 2, 2.0), (A, 3, 3.0), (B, 5, 5.0), (A, 6, 6.0)]
    assert batch.series == [A, B] and len(batch) == 5


def test_column_lengths_must_agree() -> None:
    batch = WriteBatch("t")
    with pytest.raises(ValueError):
        batch.append_columns([A, B], [1], [1.0, 2.0])
    with pytest.raises(ValueError):
        batch.extend(A, [1, 2], [1.0])
    with pytest.raises(ValueError):
        batch.append_refs([0], [1, 2], [1.0])
    assert len(batch) == 0 and batch.series == []
