"""The MLflow pyfunc model of a fitwell run (MLflow's "models from code": this file is what
MLflow loads; nothing is pickled). ``mlflow.pyfunc.load_model(uri).predict(frame)`` returns
what ``fitwell predict`` returns."""

import mlflow.models
import mlflow.pyfunc
import pandas as pd


class FitwellModel(mlflow.pyfunc.PythonModel):
    """Loads the run bundle logged as the ``run`` artifact and predicts raw table rows."""

    def load_context(self, context):
        from fitwell.serve import load_run

        self.run = load_run(context.artifacts["run"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return self.run.predict(model_input)


mlflow.models.set_model(FitwellModel())
