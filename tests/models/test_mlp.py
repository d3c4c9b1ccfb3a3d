import pytest
import torch

from fitwell.engine.losses import CrossEntropy
from fitwell.models import MLP, MODELS, input_kinds


def test_registry_lists_known_names_on_a_miss():
    from fitwell.errors import ConfigError

    with pytest.raises(ConfigError, match=r"model\.name: unknown model 'mpl'\. Did you mean 'mlp'\?"):
        MODELS.build("mpl", key="model.name")
    with pytest.raises(ValueError, match="already registered"):
        MODELS.register("mlp")(MLP)


@pytest.mark.parametrize("name", [n for n in MODELS.names() if input_kinds(n) == {"table"}])
def test_every_table_model_lowers_its_loss_on_a_tiny_batch(name):
    torch.manual_seed(0)
    numeric = torch.randn(64, 5)
    codes = torch.randint(0, 7, (64, 2))
    target = (numeric[:, 0] + (codes[:, 0] > 3).float() > 0.5).long()
    model = MODELS.build(name, num_numeric=5, cardinalities=[7, 7], out_features=2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = CrossEntropy()  # fitwell's loss: it reads tabm's (rows, heads, out) training output too
    losses = []
    for _ in range(30):
        loss = loss_fn(model(numeric, codes), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_mlp_layers_follow_config():
    model = MLP(num_numeric=3, cardinalities=[], out_features=1, hidden_sizes=[8, 4],
                activation="gelu", dropout=0.5, batch_norm=True)
    kinds = [type(m).__name__ for m in model.body]
    assert kinds == ["Linear", "BatchNorm1d", "GELU", "Dropout"] * 2
    model.eval()
    x = torch.randn(4, 3)
    empty = torch.zeros(4, 0, dtype=torch.long)
    assert torch.equal(model(x, empty), model(x, empty))  # dropout is off in eval
