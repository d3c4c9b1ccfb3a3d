import pandas as pd
import pytest
from sklearn.datasets import make_classification


@pytest.fixture
def table(tmp_path):
    """1,500 rows of a seeded classification problem, as a CSV file."""
    features, target = make_classification(1500, 10, n_informative=5, random_state=0)
    frame = pd.DataFrame(features, columns=[f"x{i}" for i in range(10)]).assign(y=target)
    path = tmp_path / "table.csv"
    frame.to_csv(path, index=False)
    return path
