import pandas as pd
import pytest

from fitwell.data.sources import read_table
from fitwell.errors import DataError


@pytest.mark.parametrize("name, rows, columns", [
    ("breast_cancer", 569, 31), ("wine", 178, 14), ("iris", 150, 5), ("diabetes", 442, 11),
    ("digits", 1797, 65),
])
def test_sklearn_datasets_by_name(name, rows, columns):
    frame = read_table(f"sklearn:{name}")
    assert frame.shape == (rows, columns) and "target" in frame.columns


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_file_formats_round_trip(tmp_path, suffix):
    frame = pd.DataFrame({"a": [1.5, 2.5, None], "b": ["x", "y", "z"], "y": [0, 1, 0]})
    path = tmp_path / f"t{suffix}"
    {".csv": lambda: frame.to_csv(path, index=False),
     ".parquet": lambda: frame.to_parquet(path),
     ".jsonl": lambda: frame.to_json(path, orient="records", lines=True)}[suffix]()
    back = read_table(path)
    assert list(back.columns) == ["a", "b", "y"]
    assert back["b"].tolist() == ["x", "y", "z"] and back["a"].isna().sum() == 1


def test_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_table(tmp_path / "missing.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty"):
        read_table(empty)
    header = tmp_path / "header.csv"
    header.write_text("a,b\n")
    with pytest.raises(DataError, match="no data rows"):
        read_table(header)
    with pytest.raises(DataError, match="Did you mean 'sklearn:wine'"):
        read_table("sklearn:wines")
    with pytest.raises(DataError, match="unknown file type"):
        read_table(header.rename(tmp_path / "x.xlsx"))
