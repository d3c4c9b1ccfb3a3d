"""Free-text columns: read as TF-IDF components instead of being dropped as IDs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from fitwell.api import train
from fitwell.data.columns import infer_columns
from fitwell.data.text import TextComponents, looks_like_text
from fitwell.errors import UserError
from fitwell.serve.bundle import load_run
from fitwell.serve.export import check_export, export_onnx
from tests.test_cli import train_preset

GOOD = ["great", "love", "perfect", "fast", "works", "recommend"]
BAD = ["broken", "refund", "late", "never", "awful", "returned"]
FILLER = ["the", "box", "order", "item", "seller", "color", "size", "price", "shipping", "package", "day",
          "week", "phone", "case", "cable", "gift", "my", "it", "was", "arrived"]


def reviews(count: int, seed: int = 0) -> pd.DataFrame:
    """Unique reviews whose label turns on their words, a number column of noise."""
    rng = np.random.default_rng(seed)
    happy = rng.random(count) < 0.5
    texts = []
    for i, good in enumerate(happy):
        words = list(rng.choice(FILLER, 6)) + list(rng.choice(GOOD if good else BAD, 2)) + [f"#{i}"]
        rng.shuffle(words)
        texts.append(" ".join(words))
    return pd.DataFrame({"review": texts, "stars_shown": rng.normal(size=count),
                         "happy": np.where(happy, "yes", "no")})


def test_phrases_are_text_and_codes_names_and_categories_are_not():
    frame = reviews(200)
    assert looks_like_text(frame["review"])
    names = pd.Series([f"{s}, {t} {f} {m}" for s, t, f, m in zip(
        np.random.default_rng(1).choice(["Braund", "Cumings", "Heikkinen", "Allen", "Moran"], 200),
        np.random.default_rng(2).choice(["Mr.", "Mrs.", "Miss.", "Master."], 200),
        np.random.default_rng(3).choice(["Owen", "John", "Laina", "William", "Ann"], 200),
        range(200), strict=True)])
    assert looks_like_text(names)  # words recur: the title is one of four
    assert not looks_like_text(pd.Series([f"AX-{i:05d}-{i * 7 % 13}" for i in range(200)]))  # an ID
    assert not looks_like_text(pd.Series(["red car", "blue big car", "green small van"] * 70))  # categories
    streets = np.random.default_rng(4).choice(["Learned-Pl", "Pinecrest-Rd", "Sherwood-Pkwy"], 200)
    urls = pd.Series([f"https://www.zillow.com/homedetails/{i}-{s}-Durham-NC/{9000 + i}_zpid/"
                      for i, s in enumerate(streets)])
    assert not looks_like_text(urls)  # an address of a page: words recur, but it names one row
    plan = infer_columns(frame, "happy")
    assert plan.kinds["review"] == "text" and "review" not in plan.dropped


def test_text_components_fit_on_training_rows_and_survive_odd_values():
    rows = pd.DataFrame({"t": ["a b", None, "", "x y z"] * 5})  # no word of two letters
    parts = TextComponents().fit(rows)
    assert parts.transform(rows).shape == (20, 1) and not parts.transform(rows).any()
    frame = reviews(300)
    parts = TextComponents(components=8).fit(frame[["review"]])
    out = parts.transform(pd.DataFrame({"review": ["broken refund", None, "never seen words qqq"]}))
    assert out.shape == (3, 8) and np.isfinite(out).all()


def test_saved_components_transform_as_the_fitted_ones_and_saving_leaves_those_intact():
    import skops.io as sio

    frame = reviews(400)
    parts = TextComponents(components=8).fit(frame[["review"]])
    saved = sio.dumps(parts)
    loaded = sio.loads(saved, trusted=sio.get_untrusted_types(data=saved))
    assert np.array_equal(loaded.transform(frame[["review"]]), parts.transform(frame[["review"]]))
    assert loaded.vectorizer_.vocabulary_ == parts.vectorizer_.vocabulary_


@pytest.mark.slow
def test_a_label_in_the_words_of_unique_reviews_is_learned_and_exported(tmp_path):
    run, test = train_preset(tmp_path, reviews(1200), "happy")
    assert test["roc_auc"] > 0.95
    new = reviews(50, seed=9)
    predicted = load_run(run).predict(new.drop(columns=["happy"]))
    assert (predicted["prediction"] == new["happy"]).mean() >= 0.9
    # the graph counts the same words: odd case, punctuation, digits, accents, empty and missing
    new.loc[0, "review"], new.loc[1, "review"] = "BROKEN, Refund!! late_2 — never", "Café GREAT-love"
    new.loc[2, "review"], new.loc[3, "review"] = "", None
    new.drop(columns=["happy"]).to_csv(tmp_path / "new.csv", index=False)
    result = check_export(run, export_onnx(run), tmp_path / "new.csv")  # the tree view and the MLP's
    assert result["max_difference"] <= 1e-6 and result["labels_equal"] == 1.0, result
    reference = yaml.safe_load((run / "reference.json").read_text())
    assert reference["columns"]["review"]["kind"] == "text"  # monitored as words a value


def test_a_network_on_text_exports_and_words_beyond_ascii_are_refused_by_name(tmp_path):
    frame = reviews(300)
    frame.to_csv(tmp_path / "t.csv", index=False)
    config = {"data": {"source": str(tmp_path / "t.csv"), "target": "happy"},
              "train": {"epochs": 3, "progress": False},
              "track": {"runs_dir": str(tmp_path / "runs"), "name": "nn", "report": False}}
    run = train(config).path
    result = check_export(run, export_onnx(run), frame.drop(columns=["happy"]))
    assert result["max_difference"] <= 1e-5 and result["labels_equal"] == 1.0, result
    frame["review"] = frame["review"].str.replace("refund", "réfund")
    frame.to_csv(tmp_path / "t.csv", index=False)
    run = train({**config, "track": {**config["track"], "name": "accents"}}).path
    with pytest.raises(UserError, match=r"'review': free text with words outside ASCII \(such as 'réfund'\)"):
        export_onnx(run)


def test_components_past_the_training_rows_rank_are_left_out():
    """Unique addresses share few words: the TF-IDF of 40 training rows has rank < 32, and the SVD's
    further components were rounding noise on those rows but not on new ones (duke_forest)."""
    rng = np.random.default_rng(0)
    streets = ["Perkins Rd", "Woodburn Rd", "Wrightwood Ave", "Lafayette St", "Pickett Rd"]
    rows = pd.DataFrame({"address": [f"{rng.integers(1000, 4000)} {rng.choice(streets)}, Durham, NC"
                                     for _ in range(40)]})
    parts = TextComponents().fit(rows)
    vocabulary = len(parts.vectorizer_.vocabulary_)
    assert parts.width_ < min(32, vocabulary - 1)
    values = parts.svd_.singular_values_
    assert values[-1] > 1e-8 * values[0]  # every component kept carries the training rows
    out = parts.transform(rows)
    assert np.abs(out).max(axis=0).min() > 1e-6
