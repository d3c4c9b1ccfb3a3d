"""Writes the two small synthetic tables the text and sequence examples train on (seeded, so the
files in the repository are exactly what this prints). Run: python examples/data/make_examples.py

- reviews.csv: 600 short film reviews, 'pos' or 'neg', whose sentiment words are mixed into
  neutral filler; 10% of the labels are flipped, so no model can be perfect.
- trends.csv: 600 noisy series of 5 to 30 readings that rise, fall or stay flat.
"""

from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).parent
GOOD = ["great", "wonderful", "excellent", "loved", "superb", "delightful", "fantastic", "brilliant", "moving",
        "charming", "gripping", "clever"]
BAD = ["awful", "terrible", "boring", "hated", "dreadful", "poor", "horrible", "dull", "tedious", "clumsy",
       "forgettable", "messy"]
FILLER = ["the", "film", "was", "really", "and", "plot", "acting", "quite", "a", "story", "it", "felt", "cast",
          "ending", "music", "script", "director", "scenes", "overall", "honestly", "very", "at", "times"]


def reviews(rows: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(rows):
        positive = i % 2 == 0
        words = list(rng.choice(FILLER, rng.integers(5, 14)))
        for _ in range(rng.integers(1, 3)):
            words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(GOOD if positive else BAD)))
        if rng.random() < 0.1:
            positive = not positive  # label noise
        texts.append(" ".join(words).capitalize() + ".")
        labels.append("pos" if positive else "neg")
    return pd.DataFrame({"review": texts, "sentiment": labels})


def trends(rows: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    series, labels = [], []
    for i in range(rows):
        kind = ("rising", "falling", "flat")[i % 3]
        length = int(rng.integers(5, 31))
        slope = {"rising": 0.3, "falling": -0.3, "flat": 0.0}[kind]
        values = rng.normal(0, 3) + slope * np.arange(length) + rng.normal(0, 0.8, length)
        series.append(" ".join(f"{v:.2f}" for v in values))
        labels.append(kind)
    return pd.DataFrame({"readings": series, "trend": labels})


if __name__ == "__main__":
    reviews().to_csv(HERE / "reviews.csv", index=False)
    trends().to_csv(HERE / "trends.csv", index=False)
    print(f"wrote {HERE / 'reviews.csv'} and {HERE / 'trends.csv'}")
