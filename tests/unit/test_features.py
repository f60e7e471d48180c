"""Model features: split sizes, windows, relative log prices, the return scaler."""

import numpy as np
import pytest

from flow_steps.config.errors import DataValidationError
from flow_steps.model.features import (
    ReturnScaler,
    check_enough_rows,
    holdout_size,
    make_windows,
    minimum_rows,
    next_log_returns,
    relative_log_prices,
)


def test_holdout_is_the_last_fraction_of_rows():
    assert holdout_size(100, 0.2) == 20
    assert holdout_size(3270, 0.2) == 654


def test_too_few_rows_says_how_many_are_needed():
    # 112 rows: round(22.4) = 22 test days, 112 - 22 - 60 = 30 training windows; 111 leave 29.
    needed = 112
    assert minimum_rows(window=60, test_fraction=0.2) == needed
    check_enough_rows(needed, 60, 0.2)
    with pytest.raises(
        DataValidationError, match=rf"^{needed - 1} rows .* need at least {needed}: lower window"
    ):
        check_enough_rows(needed - 1, 60, 0.2)


def test_windows_pair_each_history_with_the_next_value():
    windows, targets = make_windows(np.array([1.0, 2, 3, 4, 5, 6]), window=3)
    np.testing.assert_array_equal(windows, [[1, 2, 3], [2, 3, 4], [3, 4, 5]])
    np.testing.assert_array_equal(targets, [4, 5, 6])


def test_relative_log_prices_do_not_depend_on_the_price_level():
    windows = np.array([[10.0, 11, 12], [20, 19, 18]])
    features = relative_log_prices(windows)
    np.testing.assert_allclose(features[:, -1], 0)
    np.testing.assert_allclose(relative_log_prices(windows * 37.5), features)
    np.testing.assert_allclose(next_log_returns(windows, [13.2, 18]), [np.log(1.1), 0.0])


def test_return_scaler_uses_only_what_it_is_fit_on():
    scaler = ReturnScaler.fit(np.array([0.01, -0.01, 0.01, -0.01]))
    assert scaler.scale == pytest.approx(0.01)
    np.testing.assert_allclose(scaler.inverse_transform(scaler.transform([0.03])), [0.03])
    assert ReturnScaler.fit(np.zeros(3)).scale == 1.0
