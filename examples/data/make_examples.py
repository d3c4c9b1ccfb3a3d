"""Writes the two small synthetic tables the text and sequence examples train on (seeded, so the
files in the repository are exactly what this prints). Run: python examples/data/make_examples.py

- reviews.csv: 600 short film reviews, 'pos' or 'neg', whose sentiment words are mixed into
  neutral filler; 10% of the labels are flipped, so no model can be perfect.
- trends.csv: 600 noisy series of 5 to 30 readings that rise, fall or stay flat.
- patients.parquet: 24,000 made-up hospital patients (age, BMI, blood pressure, cholesterol,
  glucose, smoking, region, visits, income; a few values missing) and whether they were
  readmitted (about 1 in 5), from a known logistic model -- the private-training example's table
  and the pretraining example's unlabelled rows.
- patients_labelled.csv: 400 other patients from the same model (seed 1), the pretraining
  example's few labelled rows.
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


def patients(rows: int = 24_000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 95, rows)
    bmi = np.clip(rng.normal(27, 5, rows), 15, 55).round(1)
    systolic = np.clip(rng.normal(125 + 0.4 * (age - 50), 15, rows), 90, 200).round()
    cholesterol = np.clip(rng.normal(200, 35, rows), 120, 320).round()
    glucose = np.clip(rng.lognormal(np.log(100), 0.25, rows), 60, 250).round()
    smoker = rng.random(rows) < 0.22
    region = rng.choice(["north", "south", "east", "west", "central"], rows, p=[0.25, 0.2, 0.2, 0.2, 0.15])
    visits = rng.poisson(1.5 + 0.03 * (age - 18), rows)
    income = rng.lognormal(np.log(45_000), 0.5, rows).round(-2)
    logit = (-3.2 + 0.035 * (age - 50) + 0.05 * (bmi - 27) + 0.02 * (systolic - 125) + 0.6 * smoker
             + 0.01 * (glucose - 100) + 0.25 * visits + 0.4 * (region == "south") - 0.4 * (income > 60_000))
    readmitted = rng.random(rows) < 1 / (1 + np.exp(-logit))
    frame = pd.DataFrame({"age": age, "bmi": bmi, "systolic_bp": systolic, "cholesterol": cholesterol,
                          "glucose": glucose, "smoker": np.where(smoker, "yes", "no"), "region": region,
                          "visits_last_year": visits, "income": income,
                          "readmitted": np.where(readmitted, "yes", "no")})
    for column in ("bmi", "cholesterol", "income"):
        frame.loc[rng.random(rows) < 0.03, column] = np.nan
    return frame


if __name__ == "__main__":
    patients().to_parquet(HERE / "patients.parquet", index=False)
    patients(400, seed=1).to_csv(HERE / "patients_labelled.csv", index=False)
    reviews().to_csv(HERE / "reviews.csv", index=False)
    trends().to_csv(HERE / "trends.csv", index=False)
    print(f"wrote {HERE / 'reviews.csv'}, {HERE / 'trends.csv'}, {HERE / 'patients.parquet'} and"
          f" {HERE / 'patients_labelled.csv'}")
