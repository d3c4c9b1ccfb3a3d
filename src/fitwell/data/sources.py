"""Read a table from a file, a DataFrame, or a dataset that ships with scikit-learn."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from fitwell.errors import DataError, did_you_mean

SKLEARN_DATASETS = ("breast_cancer", "diabetes", "digits", "iris", "wine")
READERS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl",
           ".ndjson": "jsonl", ".json": "jsonl"}


def load_sklearn(name: str) -> pd.DataFrame:
    """A bundled scikit-learn dataset as one table with a ``target`` column (no download)."""
    import sklearn.datasets as ds

    if name not in SKLEARN_DATASETS:
        raise DataError(
            f"unknown dataset 'sklearn:{name}'."
            f"{did_you_mean('sklearn:' + name, ['sklearn:' + n for n in SKLEARN_DATASETS])}"
            f" Available: {', '.join('sklearn:' + n for n in SKLEARN_DATASETS)}"
        )
    return getattr(ds, f"load_{name}")(as_frame=True).frame


def check_unique_columns(columns: list, where: str) -> None:
    """Refuse a table whose column names repeat (a reader would rename or drop one silently)."""
    counts = pd.Series([str(c) for c in columns]).value_counts()
    repeated = counts[counts > 1]
    if len(repeated):
        name, times = repeated.index[0], int(repeated.iloc[0])
        positions = [i + 1 for i, c in enumerate(columns) if str(c) == name]
        raise DataError(f"{where}: column {name!r} appears {times} times (columns"
                        f" {', '.join(map(str, positions))}); rename the columns so each name is unique")


def csv_dialect(path: Path) -> tuple[str, str]:
    """(separator, decimal mark) of a .csv file: a comma, unless the header has none and holds
    semicolons, tabs or bars (a spreadsheet's export in many locales: ``a;b;c``); with semicolons,
    decimal commas when the first rows' numbers have them (``3,25``) and none has a decimal point.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "prices.csv"
        >>> _ = path.write_text("item;price\\napple;3,25\\npear;2\\n")
        >>> csv_dialect(path)
        (';', ',')
    """
    import re

    with open(path, encoding="utf-8", errors="replace") as handle:
        header, body = handle.readline(), handle.read(65_536)
    counts = {mark: header.count(mark) for mark in ";\t|"}
    separator = max(counts, key=counts.get) if "," not in header and max(counts.values()) else ","
    commas = separator == ";" and re.search(r"(?<![\d.,])-?\d+,\d+(?![\d,.])", body)
    return separator, "," if commas and not re.search(r"\d\.\d", body) else "."


def header_names(path: Path, separator: str) -> list[str]:
    import csv

    with open(path, newline="", encoding="utf-8", errors="replace") as handle:
        return next(csv.reader(handle, delimiter=separator), [])


def read_table(source: str | Path) -> pd.DataFrame:
    """Read CSV, TSV, Parquet or JSON lines by file suffix, ``sklearn:<name>``, or an image folder
    (one sub-folder per class: columns ``image`` and ``label``).

    Raises:
        DataError: the file is missing, empty, unreadable or of an unknown kind.
    """
    text = str(source)
    if text.startswith("sklearn:"):
        return load_sklearn(text.split(":", 1)[1])
    path = Path(text)
    if not path.exists():
        raise DataError(f"data file {path} does not exist; check data.source (or --data)")
    if path.is_dir():
        from fitwell.data.inputs import image_folder_table

        return image_folder_table(path)
    kind = READERS.get(path.suffix.lower())
    if kind is None:
        raise DataError(
            f"{path}: unknown file type {path.suffix!r}; use one of {', '.join(sorted(READERS))}"
        )
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty (0 bytes); it needs a header row and data rows")
    try:
        if kind in ("csv", "tsv"):
            separator, decimal = csv_dialect(path) if kind == "csv" else ("\t", ".")
            check_unique_columns(header_names(path, separator), str(path))
            try:
                frame = pd.read_csv(path, sep=separator, decimal=decimal)
            except UnicodeDecodeError:  # not UTF-8: a Windows spreadsheet's export, most often
                frame = pd.read_csv(path, sep=separator, decimal=decimal, encoding="cp1252",
                                    encoding_errors="replace")
        elif kind == "parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_json(path, lines=True)
    except pd.errors.EmptyDataError as err:
        raise DataError(f"{path} is empty; it needs a header row and data rows") from err
    except (pd.errors.ParserError, ValueError, OSError) as err:
        raise DataError(f"{path}: could not be read as {kind}: {err}") from err
    if len(frame) == 0:
        raise DataError(f"{path} has a header but no data rows")
    return frame
