"""Step 4: register the trained model, and make it the champion only if it beats the current one by evidence.

The new version gets the alias `challenger` and tags with its evaluation metrics and data lineage.
Both models are scored day by day on the new model's test days, next to the naive forecast; the alias
`champion` moves to the new version only when a one-sided Diebold-Mariano test (HLN's small-sample
correction) finds its squared errors lower at `promotion_alpha`, its RMSE is lower by at least
`min_improvement`, and its 80% interval score is not significantly worse. The first version of a model
becomes champion (tagged `no_skill_over_naive` when the same test finds no skill over the naive forecast).
A model's daily losses come from its train_model run's test predictions when that run was tested on
exactly these days (the same prepared prices, by SHA-256, and the same number of test days); otherwise
the model is loaded and scored here, which costs a TensorFlow start-up.
"""

from __future__ import annotations

import logging

import click
import mlflow

from flow_steps.config.entry_points import options
from flow_steps.config.names import (
    REGISTER_STEP,
    TAG_MODEL_VERSION,
    TAG_REGISTERED_MODEL,
)
from flow_steps.config.values import Registration
from flow_steps.deployment.registration import register
from flow_steps.runtime.inputs import local_input
from flow_steps.runtime.lifecycle import run_step

logger = logging.getLogger(__name__)


@click.command(
    help="Register a trained model as a new version of MODEL_NAME with the alias 'challenger', tagged "
    "with its metrics and data lineage. It becomes 'champion' when it is the first version, or when on its "
    "test days it beats the current champion by evidence: a Diebold-Mariano p-value at most "
    "PROMOTION_ALPHA, an RMSE lower by at least MIN_IMPROVEMENT, an 80% interval score not significantly "
    "worse."
)
@options(REGISTER_STEP)
def cli(
    model_uri: str,
    stock_data: str,
    test_fraction: float,
    model_name: str,
    promotion_alpha: float,
    min_improvement: float,
) -> None:
    registration = Registration(model_name, test_fraction, promotion_alpha, min_improvement)
    run_step(
        REGISTER_STEP,
        {
            "model_uri": model_uri,
            "stock_data": stock_data,
            "test_fraction": test_fraction,
            "model_name": model_name,
            "promotion_alpha": promotion_alpha,
            "min_improvement": min_improvement,
        },
        lambda: register(model_uri, local_input(stock_data), registration),
        output=registered_version_uri,
    )


def registered_version_uri() -> str:
    """`models:/<name>/<version>` of the version the active register run registered or found."""
    tags = mlflow.get_run(mlflow.active_run().info.run_id).data.tags
    return f"models:/{tags[TAG_REGISTERED_MODEL]}/{tags[TAG_MODEL_VERSION]}"


if __name__ == "__main__":
    cli()
