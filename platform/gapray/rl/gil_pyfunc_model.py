"""MLflow "models from code" entry point of GIL's final predictor (:mod:`gapray.rl.gil_model`)."""

from mlflow.models import set_model

from gapray.rl.gil_model import GILPredictorPyfunc

set_model(GILPredictorPyfunc())
