"""The served model, logged as code: MLflow runs this file to build it, so nothing is unpickled.

Its `window` and `return_scale` come from the model config logged with it; its Keras weights from
the `keras_model` artifact.
"""

from mlflow.models import set_model

from flow_steps.model.pyfunc import LstmPriceForecaster

set_model(LstmPriceForecaster())
