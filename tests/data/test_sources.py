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


@pytest.mark.parametrize("text, numbers", [
    # a spreadsheet's CSV export where the decimal mark is a comma: semicolons between fields
    ("name;size;y\nA;1,5;0\nB;-2,25;1\nC;3;0\n", [1.5, -2.25, 3.0]),
    ("name;size;y\nA;1.5;0\nB;-2.25;1\nC;3;0\n", [1.5, -2.25, 3.0]),  # semicolons, decimal points
    ("name\tsize\ty\nA\t1.5\t0\nB\t-2.25\t1\nC\t3\t0\n", [1.5, -2.25, 3.0]),  # tabs in a .csv
    ("name,size,y\nA,1.5,0\nB,-2.25,1\nC,3,0\n", [1.5, -2.25, 3.0]),
])
def test_a_csv_is_read_with_the_separator_and_decimal_mark_it_was_written_with(tmp_path, text, numbers):
    path = tmp_path / "table.csv"
    path.write_text(text)
    frame = read_table(path)
    assert list(frame.columns) == ["name", "size", "y"]
    assert frame["size"].tolist() == numbers and frame["size"].dtype == float


def test_a_csv_that_is_not_utf8_is_read_as_a_windows_export(tmp_path):
    """Excel on Windows saves CSV in the system code page: 'Köln' as one byte 0xf6, which UTF-8
    cannot decode. Read as cp1252, the text comes back as written."""
    path = tmp_path / "cities.csv"
    pd.DataFrame({"city": ["Köln", "München", "Zürich"], "y": [0, 1, 0]}).to_csv(
        path, index=False, encoding="cp1252")
    assert read_table(path)["city"].tolist() == ["Köln", "München", "Zürich"]
