"""The dataset container and the two delta conventions against hand-computed tables."""

from __future__ import annotations

import numpy as np
import pytest

from gapray.data import DatasetError, TimeSeriesDataset, compute_deltas

NAN = np.nan


def figure1_dataset() -> TimeSeriesDataset:
    """DEARI Fig. 1: stamps 0, 4, 5, 7, 9; feature 2 observed at t1 and t5 only."""
    X = np.array([[[1.0, 2.0], [1.5, NAN], [1.2, NAN], [1.1, NAN], [0.9, 3.0]]], dtype=np.float32)
    times = np.array([[0.0, 4.0, 5.0, 7.0, 9.0]], dtype=np.float32)
    return TimeSeriesDataset(X=X, times=times, feature_names=("d1", "d2"))


def test_paper_figure1_delta_5_2_is_9() -> None:
    deltas = figure1_dataset().deltas(convention="paper")
    np.testing.assert_array_equal(deltas[0, :, 1], [0, 4, 5, 7, 9])
    assert deltas[0, 4, 1] == 9
    # feature 1 is always observed: the delta is just the time gap
    np.testing.assert_array_equal(deltas[0, :, 0], [0, 4, 1, 2, 2])


def test_paper_backward_deltas_run_on_the_reversed_series() -> None:
    deltas = figure1_dataset().deltas(convention="paper", direction="backward")
    # reversed stamps 9, 7, 5, 4, 0 -> gaps 2, 2, 1, 4; feature 2 reversed mask 1, 0, 0, 0, 1
    np.testing.assert_array_equal(deltas[0, :, 1], [0, 2, 4, 5, 9])
    np.testing.assert_array_equal(deltas[0, :, 0], [0, 2, 2, 1, 4])


def test_brits_reference_deltas_start_at_one_and_use_current_mask() -> None:
    mask = np.array([1, 0, 0, 1, 0], dtype=np.float32).reshape(1, 5, 1)
    forward = compute_deltas(mask, convention="brits")
    # d0 = 1; d_t = 1 + (1 - m_t) d_{t-1}: m1=0 -> 2, m2=0 -> 3, m3=1 -> 1, m4=0 -> 2
    np.testing.assert_array_equal(forward[0, :, 0], [1, 2, 3, 1, 2])
    backward = compute_deltas(mask, convention="brits", direction="backward")
    # reversed mask 0, 1, 0, 0, 1 -> 1, 1, 2, 3, 1
    np.testing.assert_array_equal(backward[0, :, 0], [1, 1, 2, 3, 1])


def test_mask_missing_rate_and_indicating_mask() -> None:
    X = np.array([[[1.0, NAN], [NAN, NAN]]], dtype=np.float32)
    X_ori = np.array([[[1.0, 5.0], [NAN, NAN]]], dtype=np.float32)
    dataset = TimeSeriesDataset(X=X, X_ori=X_ori)
    np.testing.assert_array_equal(dataset.mask[0], [[1, 0], [0, 0]])
    np.testing.assert_array_equal(dataset.indicating_mask[0], [[0, 1], [0, 0]])
    assert dataset.missing_rate == pytest.approx(0.75)


def test_subset_keeps_fields_aligned() -> None:
    X = np.arange(24, dtype=np.float32).reshape(4, 3, 2)
    dataset = TimeSeriesDataset(X=X, y=np.array([0, 1, 0, 1]), record_ids=np.array([10, 11, 12, 13]))
    part = dataset.subset([3, 1])
    np.testing.assert_array_equal(part.record_ids, [13, 11])
    np.testing.assert_array_equal(part.y, [1, 1])
    np.testing.assert_array_equal(part.X[0], X[3])
    assert part.describe()["labels"] == {1: 2}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"X": np.zeros((3, 4))}, "shape \\[N, T, D\\]"),
        ({"X": np.full((1, 2, 2), np.inf)}, "infinite value at sample 0, step 0, feature 0"),
        ({"X": np.zeros((2, 3, 1)), "y": np.zeros(3, dtype=int)}, "y has shape"),
        ({"X": np.zeros((2, 3, 2)), "feature_names": ("a",)}, "1 feature names for 2 features"),
        ({"X": np.zeros((2, 3, 1)), "times": np.zeros((2, 2))}, "times has shape"),
    ],
)
def test_bad_container_input_names_the_problem(kwargs: dict, message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        TimeSeriesDataset(**kwargs)


def test_bad_delta_arguments() -> None:
    with pytest.raises(DatasetError, match="convention"):
        compute_deltas(np.ones((1, 2, 1)), convention="other")  # type: ignore[arg-type]
    with pytest.raises(DatasetError, match="direction"):
        compute_deltas(np.ones((1, 2, 1)), direction="sideways")  # type: ignore[arg-type]


def test_subset_indexes_per_sample_extras_and_keeps_shared_ones() -> None:
    X = np.zeros((3, 2, 1), dtype=np.float32)
    dataset = TimeSeriesDataset(X=X, extra={"static": np.array([[1.0], [2.0], [3.0]]), "units": np.array(["h", "m"])})
    part = dataset.subset([2, 0])
    np.testing.assert_array_equal(part.extra["static"], [[3.0], [1.0]])
    np.testing.assert_array_equal(part.extra["units"], ["h", "m"])
