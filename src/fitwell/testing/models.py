"""The model registry's contract: what every ``model.name`` must do for the loop, the
checkpoint and the exported bundle to work with it."""

from __future__ import annotations

from typing import Any

import torch


def tiny_batch(num_numeric: int = 5, cardinalities=(4, 7), rows: int = 32, classes: int = 3, seed: int = 0):
    """Numbers, category codes (0 = unknown) and a target that depends on both."""
    generator = torch.Generator().manual_seed(seed)
    numeric = torch.randn(rows, num_numeric, generator=generator)
    codes = torch.stack([torch.randint(0, n, (rows,), generator=generator) for n in cardinalities], dim=1) \
        if cardinalities else torch.zeros(rows, 0, dtype=torch.long)
    score = numeric[:, 0] + (codes[:, 0].float() if len(cardinalities) else 0.0)
    target = torch.bucketize(score, torch.quantile(score, torch.linspace(0, 1, classes + 1)[1:-1]))
    return numeric, codes, target


def check_model(name: str, steps: int = 30, **arguments: Any) -> dict[str, float]:
    """Build ``name`` from the registry and check the contract; return the losses.

    1. ``model(numeric, codes)`` gives ``(rows, out_features)`` logits, with and without coded
       columns and with numbers only.
    2. A few Adam steps on one tiny batch lower the loss (it can learn).
    3. Evaluation is deterministic (dropout off) and batch-size independent.
    4. ``state_dict`` loads strictly into a fresh build (checkpoints, bundles).

    Raises:
        AssertionError: naming the broken part of the contract.

    Example:
        >>> check_model("mlp", hidden_sizes=[16])["after"] < check_model("mlp", hidden_sizes=[16])["before"]
        True
    """
    from fitwell.models import MODELS

    numeric, codes, target = tiny_batch()
    cardinalities = [4, 7]
    for shape_case in ([4, 7], []):
        model = MODELS.build(name, num_numeric=5, cardinalities=shape_case, out_features=3, **arguments)
        out = model(numeric, codes[:, :len(shape_case)])
        assert out.shape == (32, 3), f"{name}: output shape {tuple(out.shape)}, expected (32, 3)"
    torch.manual_seed(0)
    model = MODELS.build(name, num_numeric=5, cardinalities=cardinalities, out_features=3, **arguments)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.eval()
    with torch.no_grad():
        before = float(loss_fn(model(numeric, codes), target))
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        loss = loss_fn(model(numeric, codes), target)
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        after = float(loss_fn(model(numeric, codes), target))
        first, second = model(numeric, codes), model(numeric, codes)
        halves = torch.cat([model(numeric[:16], codes[:16]), model(numeric[16:], codes[16:])])
    assert after < 0.8 * before, f"{name}: loss did not fall on a tiny batch ({before:.4f} -> {after:.4f})"
    assert torch.equal(first, second), f"{name}: evaluation is not deterministic (dropout left on?)"
    assert torch.allclose(first, halves, atol=1e-5), f"{name}: outputs depend on the batch in eval mode"
    fresh = MODELS.build(name, num_numeric=5, cardinalities=cardinalities, out_features=3, **arguments)
    fresh.load_state_dict(model.state_dict(), strict=True)
    fresh.eval()
    with torch.no_grad():
        assert torch.equal(fresh(numeric, codes), first), f"{name}: state_dict does not round-trip"
    return {"before": before, "after": after}
