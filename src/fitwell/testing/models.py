"""The model registry's contract: what every ``model.name`` must do for the loop, the
checkpoint and the exported bundle to work with it."""

from __future__ import annotations

from typing import Any

import torch


def tiny_batch(num_numeric: int = 5, cardinalities=(4, 7), rows: int = 32, classes: int = 3, seed: int = 0):
    """Numbers, category codes (0 = unknown) and a target that depends on both."""
    generator = torch.Generator().manual_seed(seed)
    numeric = torch.randn(rows, num_numeric, generator=generator)
    codes = (
        torch.stack([torch.randint(0, n, (rows,), generator=generator) for n in cardinalities], dim=1)
        if cardinalities
        else torch.zeros(rows, 0, dtype=torch.long)
    )
    score = numeric[:, 0] + (codes[:, 0].float() if len(cardinalities) else 0.0)
    target = torch.bucketize(score, torch.quantile(score, torch.linspace(0, 1, classes + 1)[1:-1]))
    return numeric, codes, target


def tiny_inputs(
    target: torch.Tensor, kinds: frozenset[str], seed: int = 0, word_offset: int = 0
) -> tuple[dict, dict]:
    """Image / token / sequence blocks whose content depends on ``target``, and their spec.

    The image has a bright 2x2 patch whose place is the class; the text's last word is the
    class's word; the sequence's level is the class (rows have 3 to 7 real steps).
    """
    generator = torch.Generator().manual_seed(seed)
    rows = len(target)
    spec, tensors = {}, {}
    if "image" in kinds:
        image = torch.randint(0, 60, (rows, 1, 8, 8), generator=generator, dtype=torch.uint8)
        for i, label in enumerate(target.tolist()):
            top, left = 2 * (label // 2), 2 * (label % 2)
            image[i, 0, top : top + 2, left : left + 2] = 250
        spec["image"] = {"shape": [1, 8, 8], "mean": [0.2], "std": [0.25]}
        tensors["image"] = image
    if "tokens" in kinds:
        vocab = 40
        words = torch.randint(10, vocab, (rows, 5), generator=generator) + word_offset
        tokens = torch.cat(
            [
                torch.full((rows, 1), 2),
                words,
                5 + word_offset + target.view(-1, 1),
                torch.full((rows, 1), 3),
                torch.zeros(rows, 2, dtype=torch.long),
            ],
            dim=1,
        )
        spec["tokens"] = {"vocab_size": vocab, "length": tokens.shape[1], "mask_id": 4}
        tensors["tokens"] = tokens
    if "sequence" in kinds:
        lengths = torch.randint(3, 8, (rows,), generator=generator)
        mask = torch.arange(7).view(1, -1) < lengths.view(-1, 1)
        values = torch.randn(rows, 7, 2, generator=generator) * 0.3 + target.view(-1, 1, 1).float()
        spec["sequence"] = {"features": 2, "length": 7}
        tensors["sequence"], tensors["sequence_mask"] = values * mask.unsqueeze(-1), mask
    return spec, tensors


def _rows(tensors: dict, start: int, stop: int) -> dict:
    return {k: v[start:stop] for k, v in tensors.items()}


def _learn_a_little(model, numeric, codes, target, inputs: dict, steps: int):
    """Adam steps on one batch: the loss before and after, two eval outputs (whole and halves)."""
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    from fitwell.engine.losses import CrossEntropy

    loss_fn = CrossEntropy()  # fitwell's: it also reads (rows, heads, out) training outputs
    model.eval()
    with torch.no_grad():
        before = float(loss_fn(model(numeric, codes, **inputs), target))
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        loss = loss_fn(model(numeric, codes, **inputs), target)
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        after = float(loss_fn(model(numeric, codes, **inputs), target))
        first, second = model(numeric, codes, **inputs), model(numeric, codes, **inputs)
        assert torch.equal(first, second), "evaluation is not deterministic (dropout left on?)"
        halves = torch.cat(
            [
                model(numeric[:16], codes[:16], **_rows(inputs, 0, 16)),
                model(numeric[16:], codes[16:], **_rows(inputs, 16, 32)),
            ]
        )
    return before, after, first, halves


def _check_shapes(name: str, model, numeric, codes, inputs: dict) -> None:
    """(rows, out) logits in eval mode; in training too, or (rows, k, out) for a family that
    trains k heads (``output_heads``, tabm)."""
    heads = getattr(model, "output_heads", None)
    expected = (32, heads, 3) if heads else (32, 3)
    out = model(numeric, codes, **inputs)
    assert out.shape == expected, f"{name}: training output shape {tuple(out.shape)}, expected {expected}"
    out = model.eval()(numeric, codes, **inputs)
    assert out.shape == (32, 3), f"{name}: eval output shape {tuple(out.shape)}, expected (32, 3)"


def check_model(name: str, steps: int = 30, **arguments: Any) -> dict[str, float]:
    """Build ``name`` from the registry and check the contract; return the losses.

    1. ``model(numeric, codes, **inputs)`` gives ``(rows, out_features)`` logits; a family that
       reads the table does so with and without coded columns.
    2. A few Adam steps on one tiny batch lower the loss (it can learn).
    3. Evaluation is deterministic (dropout off) and batch-size independent.
    4. ``state_dict`` loads strictly into a fresh build (checkpoints, bundles).

    The batch holds the input kinds the family reads (``input_kinds``: table, image, tokens,
    sequence; the combiner gets a table, an image and text).

    Raises:
        AssertionError: naming the broken part of the contract.

    Example:
        >>> check_model("mlp", hidden_sizes=[16])["after"] < check_model("mlp", hidden_sizes=[16])["before"]
        True
    """
    from fitwell.models import MODELS, input_kinds

    kinds = input_kinds(name)
    if name == "combiner":
        kinds = frozenset({"table", "image", "tokens"})
    elif "tokens" in kinds and "sequence" in kinds:
        kinds = frozenset({"tokens"}) if name != "transformer" else frozenset({"sequence"})
    numeric, codes, target = tiny_batch()
    spec, inputs = tiny_inputs(target, kinds, word_offset=2000 if name == "minilm" else 0)
    if name == "minilm":  # its own vocabulary (ids from 2000 up are ordinary words)
        spec["tokens"]["vocab_size"] = 30522
    cardinalities = [4, 7]
    if "table" not in kinds:
        numeric, codes, cardinalities = numeric[:, :0], codes[:, :0], []
    num_numeric = numeric.shape[1]

    def build(cards):
        extra = {"inputs": spec} if spec else {}
        return MODELS.build(
            name, num_numeric=num_numeric, cardinalities=cards, out_features=3, **extra, **arguments
        )

    for shape_case in [cardinalities, []] if cardinalities else [[]]:
        _check_shapes(name, build(shape_case), numeric, codes[:, : len(shape_case)], inputs)
    torch.manual_seed(0)
    model = build(cardinalities)
    before, after, first, halves = _learn_a_little(model, numeric, codes, target, inputs, steps)
    assert after < 0.8 * before, f"{name}: loss did not fall on a tiny batch ({before:.4f} -> {after:.4f})"
    assert torch.allclose(first, halves, atol=1e-4), f"{name}: outputs depend on the batch in eval mode"
    fresh = build(cardinalities)
    fresh.load_state_dict(model.state_dict(), strict=True)
    fresh.eval()
    with torch.no_grad():
        assert torch.allclose(fresh(numeric, codes, **inputs), first, atol=1e-6), (
            f"{name}: state_dict does not round-trip"
        )
    return {"before": before, "after": after}
