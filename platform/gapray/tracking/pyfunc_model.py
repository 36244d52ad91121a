"""MLflow "models from code" entry point: the pyfunc model logged by :func:`log_and_register_model`.

MLflow 3 loads this file instead of unpickling a Python object; the imputer class to load comes
from the logged ``model_config["model_class"]``.
"""

from mlflow.models import set_model

from gapray.tracking.registry import ImputerPyfunc

set_model(ImputerPyfunc())
