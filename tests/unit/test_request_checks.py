"""What the served model checks in a request."""

import pandas as pd
import pytest

from flow_steps.config.errors import DataValidationError
from flow_steps.model.request_checks import closes_from_input


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"Open": [1.0, 2, 3]}), "needs a 'Close' column; found columns: Open"),
        (pd.DataFrame({"Close": [1.0, 2]}), "2 rows of 'Close', the model needs at least 3"),
        (pd.DataFrame({"Close": [1.0, "x", 3]}), "row 1 is not a number"),
        (pd.DataFrame({"Close": [1.0, -2, 3]}), "row 1 is not positive"),
    ],
)
def test_model_input_is_checked(frame, message):
    with pytest.raises(DataValidationError, match=message):
        closes_from_input(frame, window=3)
