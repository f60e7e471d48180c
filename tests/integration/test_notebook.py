"""The analysis notebook runs top to bottom in a real Jupyter kernel and agrees with the pipeline."""

from __future__ import annotations

import io
import json
from dataclasses import replace

import nbformat
import pandas as pd
import pytest

from data_analysis.run_notebook import NOTEBOOK, drop_runtime_noise, execute
from flow_steps.config.values import TrainParams
from flow_steps.data.ingest import load_prices
from flow_steps.data.sources import SAMPLE_FILE
from flow_steps.model.features import holdout_size
from flow_steps.training.evaluation import BASELINES, LSTM, STATISTICAL_PEERS
from flow_steps.training.lstm import evaluate_split

# One worker for the whole file: its module-scoped fixture is set up once.
pytestmark = [pytest.mark.kernel, pytest.mark.xdist_group("test_notebook")]
FAST_ROWS, FAST_EPOCHS = 700, 1  # what the notebook's fast mode uses


@pytest.fixture(scope="module")
def executed(tmp_path_factory) -> nbformat.NotebookNode:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # One extra cell hands the comparison table back to the test; the committed notebook is unchanged.
    notebook.cells.append(
        nbformat.v4.new_code_cell(
            "print('TABLE=' + comparison_table.reset_index().to_json(double_precision=15))"
        )
    )
    with pytest.MonkeyPatch.context() as env:
        env.setenv("STOCK_NOTEBOOK_FAST", "1")
        return drop_runtime_noise(execute(notebook, NOTEBOOK.parent, timeout=600))


def test_notebook_runs_without_errors_and_compares_every_approach(executed):
    outputs = [output for cell in executed.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    images = [output for output in outputs if "image/png" in output.get("data", {})]
    assert len(images) >= 6  # history, returns, approaches, LSTM vs naive, intervals, leakage
    table = comparison_table(executed)
    assert table["model"].tolist() == [LSTM, *BASELINES, *STATISTICAL_PEERS]
    assert set(table.columns) >= {"rmse", "mae", "mape", "mase", "directional_accuracy", "rmse_vs_naive"}
    assert set(table.columns) >= {"coverage_80", "interval_score_80", "coverage_95", "interval_score_95"}


def test_notebook_numbers_agree_with_the_pipeline_on_the_same_split(executed):
    prices = load_prices(SAMPLE_FILE.read_bytes(), SAMPLE_FILE.name, FAST_ROWS).prices
    params = replace(TrainParams(), epochs=FAST_EPOCHS)
    pipeline = evaluate_split(prices, holdout_size(len(prices), params.test_fraction), params).table
    notebook = comparison_table(executed)
    for model in ("naive", "moving_average", "linear_regression", "knn", *STATISTICAL_PEERS):
        expected = pipeline.set_index("model").loc[model, "rmse"]
        assert notebook.set_index("model").loc[model, "rmse"] == pytest.approx(expected, rel=1e-12)
    assert notebook.set_index("model").loc[LSTM, "rmse"] == pytest.approx(
        pipeline.set_index("model").loc[LSTM, "rmse"], rel=1e-3
    )


def test_committed_notebook_has_its_outputs_and_an_html_export():
    committed = nbformat.read(NOTEBOOK, as_version=4)
    code_cells = [cell for cell in committed.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code_cells)
    assert any("image/png" in output.get("data", {}) for cell in code_cells for output in cell.outputs)
    html = NOTEBOOK.with_suffix(".html")
    assert html.is_file() and "Seven approaches on one chronological split" in html.read_text(
        encoding="utf-8"
    )


def comparison_table(notebook: nbformat.NotebookNode) -> pd.DataFrame:
    for output in notebook.cells[-1].outputs:
        if output.output_type == "stream" and "TABLE=" in output.text:
            payload = output.text.split("TABLE=", 1)[1].strip()
            return pd.read_json(io.StringIO(json.dumps(json.loads(payload))))
    raise AssertionError("the notebook printed no comparison table")
