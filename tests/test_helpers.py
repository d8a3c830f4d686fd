"""The comparison helper itself must be able to fail, and say where."""
import numpy as np
import pytest

from tests.helpers import assert_close_report


def test_passes_within_tolerance():
    assert_close_report("x", np.array([1.0, 2.0]), np.array([1.0, 2.0 + 1e-13]), rtol=1e-10, atol=0)


def test_reports_name_index_and_values():
    a = np.zeros((2, 3))
    e = np.zeros((2, 3))
    e[1, 2] = 0.5
    with pytest.raises(AssertionError) as info:
        assert_close_report("dW1", a, e, rtol=1e-10, atol=1e-12)
    msg = str(info.value)
    assert "dW1" in msg and "(1, 2)" in msg and "actual=0.0" in msg and "expected=0.5" in msg


def test_nan_never_matches():
    with pytest.raises(AssertionError, match="loss"):
        assert_close_report("loss", np.nan, 1.0, rtol=1, atol=1)


def test_shape_mismatch_fails():
    with pytest.raises(AssertionError, match="shape"):
        assert_close_report("b1", np.zeros(3), np.zeros(4), rtol=1, atol=1)
