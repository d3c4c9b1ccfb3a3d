"""The training doctor: reads a run's curves and statistics and says what went wrong, with the
evidence (epochs, values) and the config change to try.

Each check is a pure function of the history rows (and what else it names) that returns a
Finding or None; ``diagnose`` runs them all.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from fitwell.findings import Finding, sort_findings

OVERFIT_RISE_FLOOR = 0.01  # a rise under 1% of the best loss is never called overfitting
SPIKE_FACTOR = 2.0  # an epoch's training loss this many times the best so far
SLOW_DROP = 0.05  # training loss fell by less than this share over the run
DEAD_SHARE = 0.5


def _series(history: Sequence[dict], key: str) -> list[float]:
    return [float(row[key]) if row.get(key) is not None else math.nan for row in history]


def _epoch(history: Sequence[dict], i: int) -> int:
    return int(history[i].get("epoch", i + 1))


def check_divergence(history: Sequence[dict], diverged: bool, stop_reason: str | None,
                     lr: float) -> Finding | None:
    """The loss became NaN or infinite: the learning rate is too high for this model and data."""
    losses = _series(history, "train_loss")
    blown = [i for i, v in enumerate(losses) if not math.isfinite(v)]
    if not diverged and not blown:
        return None
    where = f"epoch {_epoch(history, blown[0])}" if blown else (stop_reason or "training")
    return Finding(
        "learning_rate_too_high", "error",
        f"training diverged ({where}): the loss became non-finite at learning rate {lr:g}",
        evidence={"stop_reason": stop_reason, "lr": lr, "last_finite_losses": [
            v for v in losses if math.isfinite(v)][-3:]},
        fix=f"train.lr={lr / 10:g} and train.clip_grad_norm=1.0 (or find a rate: train.lr=auto)")


def check_spikes(history: Sequence[dict], lr: float) -> Finding | None:
    """Training-loss jumps: an epoch's loss at least twice the best so far."""
    losses = _series(history, "train_loss")
    spikes = []
    for i in range(1, len(losses)):
        best = np.nanmin(losses[:i])
        jumped = losses[i] >= SPIKE_FACTOR * best and losses[i] > losses[0] * 0.5
        if math.isfinite(losses[i]) and best > 0 and jumped:
            spikes.append((_epoch(history, i), losses[i], float(best)))
    if not spikes:
        return None
    first = spikes[0]
    return Finding(
        "learning_rate_too_high", "warning",
        f"training loss spiked {len(spikes)} time(s): epoch {first[0]} reached {first[1]:.4g} after a best"
        f" of {first[2]:.4g}", evidence={"spikes": [{"epoch": e, "loss": v, "best_before": b}
                                                    for e, v, b in spikes[:10]], "lr": lr},
        fix=f"train.lr={lr / 3:g}, or a warmup: train.schedule.name=cosine train.schedule.warmup_epochs=2;"
            " train.clip_grad_norm=1.0 bounds single bad steps")


def curve_noise(values: Sequence[float]) -> float:
    """The epoch-to-epoch noise of a curve: a robust standard deviation from its second differences
    (which a steady rise or fall does not inflate).

    Example:
        >>> round(curve_noise([1.0, 0.9, 0.8, 0.7, 0.6]), 6)  # a straight line has no noise
        0.0
    """
    finite = np.array([v for v in values if math.isfinite(v)], dtype=float)
    if len(finite) < 3:
        return 0.0
    second = np.abs(np.diff(finite, n=2))
    return float(1.4826 * np.median(second) / math.sqrt(6))


def check_overfitting(history: Sequence[dict], config) -> Finding | None:
    """Validation loss rising from its best while training loss keeps falling."""
    val, tr = _series(history, "val_loss"), _series(history, "train_loss")
    if len(val) < 4 or not any(math.isfinite(v) for v in val):
        return None
    best = int(np.nanargmin(val))
    last = len(val) - 1
    if last - best < 2 or not math.isfinite(val[last]):
        return None
    rise = (val[last] - val[best]) / max(abs(val[best]), 1e-12)
    noise = curve_noise(val)
    # a rise that stands out of the curve's own epoch-to-epoch noise and holds for the last epochs
    threshold = max(3 * noise, OVERFIT_RISE_FLOOR * abs(val[best]))
    held = all(v > val[best] + noise for v in val[max(best + 1, last - 2):] if math.isfinite(v))
    if val[last] - val[best] < threshold or not held or not tr[last] < tr[best]:
        return None
    model, train = config.model, config.train
    changes = [f"model.dropout={min(0.5, model.dropout + 0.2):g}",
               f"train.weight_decay={max(train.weight_decay * 10, 1e-3):g}"]
    if len(model.hidden_sizes) and max(model.hidden_sizes) > 16:
        changes.append(f"model.hidden_sizes={[max(8, h // 2) for h in model.hidden_sizes]}")
    if not train.early_stopping.enabled:
        changes.append("train.early_stopping.enabled=true")
    kept = " (early stopping kept the best epoch's weights)" if (
        train.early_stopping.enabled and train.early_stopping.restore_best) else ""
    return Finding(
        "overfitting", "warning",
        f"validation loss rose {rise:.0%} from its best {val[best]:.4g} (epoch {_epoch(history, best)}) to"
        f" {val[last]:.4g} (epoch {_epoch(history, last)}) while training loss fell from {tr[best]:.4g} to"
        f" {tr[last]:.4g}{kept}",
        evidence={"best_epoch": _epoch(history, best), "best_val_loss": val[best], "last_epoch":
                  _epoch(history, last), "last_val_loss": val[last], "train_loss_at_best": tr[best],
                  "last_train_loss": tr[last]},
        fix=" ".join(changes))


def baseline_loss(task: str, class_counts: Sequence[int] | None, scaled_target: bool) -> float | None:
    """The loss of a model that ignores the inputs: the class-frequency cross-entropy, or 1.0 for
    the mean-squared error of a standardised target."""
    if task == "regression":
        return 1.0 if scaled_target else None
    counts = np.asarray(class_counts or [], dtype=float)
    if counts.sum() == 0:
        return None
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def check_underfitting(history: Sequence[dict], baseline: float | None, config) -> Finding | None:
    """Training loss barely below the loss of ignoring the inputs."""
    losses = [v for v in _series(history, "train_loss") if math.isfinite(v)]
    if baseline is None or not losses or baseline <= 0:
        return None
    final = losses[-1]
    if final < 0.9 * baseline:
        return None
    model = config.model
    return Finding(
        "underfitting", "warning",
        f"final training loss {final:.4g} is {final / baseline:.0%} of the loss of ignoring the inputs"
        f" ({baseline:.4g}): the model learns little from the data",
        evidence={"final_train_loss": final, "baseline_loss": baseline},
        fix=f"a larger model (model.hidden_sizes={[h * 2 for h in model.hidden_sizes] or [64]}), less"
            f" regularisation (model.dropout=0 train.weight_decay=0), more epochs or a higher rate"
            f" (train.lr=auto); check that the inputs can predict the target at all (fitwell audit)")


def check_worse_than_baseline(history: Sequence[dict], baseline: float | None, config,
                              best_epoch: int | None) -> Finding | None:
    """Validation loss of the kept weights above the loss of predicting the class frequencies (or
    the mean): the model is worse than a constant, whatever its other metrics say."""
    train = config.train
    if baseline is None or train.class_weights is not None or train.label_smoothing:
        return None
    losses = _series(history, "val_loss")
    if not losses:
        return None
    kept = losses[best_epoch - 1] if best_epoch and best_epoch <= len(losses) else losses[-1]
    if math.isfinite(kept) and kept <= 1.05 * baseline:
        return None
    return Finding(
        "worse_than_baseline", "error",
        f"validation loss {kept:.4g} of the kept weights is worse than the loss of ignoring the inputs"
        f" ({baseline:.4g}): a constant prediction would score better",
        evidence={"val_loss": kept, "baseline_loss": baseline},
        fix="a lower train.lr (or train.lr=auto), train.clip_grad_norm=1.0, and check the data (fitwell"
            " audit)")


def check_slow_learning(history: Sequence[dict], lr: float) -> Finding | None:
    """Training loss falling steadily but very slowly: the rate is too low."""
    losses = [v for v in _series(history, "train_loss") if math.isfinite(v)]
    if len(losses) < 5 or losses[0] <= 0:
        return None
    drop = (losses[0] - losses[-1]) / losses[0]
    steady = sum(b < a for a, b in zip(losses, losses[1:], strict=False)) >= 0.8 * (len(losses) - 1)
    if drop >= SLOW_DROP or not steady or drop <= 0:
        return None
    return Finding(
        "learning_rate_too_low", "warning",
        f"training loss fell only {drop:.1%} in {len(losses)} epochs ({losses[0]:.4g} -> {losses[-1]:.4g}),"
        f" falling every epoch: the learning rate {lr:g} is probably too low",
        evidence={"first_loss": losses[0], "last_loss": losses[-1], "epochs": len(losses), "lr": lr},
        fix=f"train.lr={lr * 10:g}, or let fitwell measure one: train.lr=auto"
            " (fitwell lr-find shows the curve)")


def check_gradients(history: Sequence[dict]) -> Finding | None:
    """Exploding (huge or non-finite peaks) or vanishing (tiny) gradient norms."""
    means = [v for v in _series(history, "grad_norm") if math.isfinite(v)]
    if not means:
        return None
    typical = float(np.median(means))
    # only the epochs that measured it (train.grad_norm_every can skip epochs)
    peaks = [(_epoch(history, i), float(row["grad_norm_max"])) for i, row in enumerate(history)
             if row.get("grad_norm_max") is not None]
    bad = [(epoch, v) for epoch, v in peaks
           if not math.isfinite(v) or (typical > 0 and v > 50 * typical and v > 10)]
    if bad:
        return Finding(
            "exploding_gradients", "warning",
            f"gradient norm peaked at {bad[0][1]:.4g} in epoch {bad[0][0]} against a typical {typical:.4g}"
            f" ({len(bad)} epoch(s) affected)",
            evidence={"typical_grad_norm": typical,
                      "peaks": [{"epoch": e, "grad_norm_max": v} for e, v in bad[:10]]},
            fix="train.clip_grad_norm=1.0; a lower train.lr; model.batch_norm=true")
    if typical < 1e-5:
        return Finding(
            "vanishing_gradients", "warning",
            f"typical gradient norm is {typical:.2e}: the weights barely move",
            evidence={"typical_grad_norm": typical},
            fix="model.activation=relu (or gelu) instead of a saturating one, model.batch_norm=true,"
                " fewer layers, or a higher train.lr")
    return None


def check_dead_units(activations: dict[str, dict] | None) -> Finding | None:
    """ReLU units that output zero for every sampled training row never learn again."""
    if not activations:
        return None
    dead = {name: stats for name, stats in activations.items() if stats["share"] >= DEAD_SHARE}
    if not dead:
        return None
    name, stats = max(dead.items(), key=lambda item: item[1]["share"])
    return Finding(
        "dead_relu", "warning",
        f"{stats['dead']} of {stats['units']} units in {name} ({stats['share']:.0%}) output zero for every"
        f" one of {stats['rows']} training rows: they are dead", evidence={"layers": activations},
        fix="model.activation=leaky_relu (or gelu), a lower train.lr, or model.batch_norm=true")


def check_patience(history: Sequence[dict], config, best_epoch: int | None) -> Finding | None:
    """Training ended by train.epochs while the monitored metric was still improving, so early
    stopping's patience was never used."""
    train = config.train
    if not history or len(history) < train.epochs or not train.early_stopping.enabled:
        return None
    if getattr(config, "privacy", None) is not None:
        return None  # a private run trains its planned steps: early stopping is off on purpose
    patience = train.early_stopping.patience
    best = best_epoch or len(history)
    if len(history) - best >= patience:
        return None
    return Finding(
        "early_stopping_unused", "info",
        f"training ran all {train.epochs} epochs and {train.early_stopping.monitor} was still improving"
        f" (best at epoch {best}); the patience of {patience} epochs never came into play",
        evidence={"epochs": len(history), "best_epoch": best, "patience": patience},
        fix=f"train.epochs={train.epochs * 2} (early stopping ends the run when it stops improving)")


def check_minority_recall(predictions, classes: list, private: bool = False) -> Finding | None:
    """A class the model rarely gets right on the test split, in an imbalanced task (a private
    run is told only the fixes it may use)."""
    if predictions is None or not classes or len(predictions) == 0:
        return None
    truth = predictions["target"].astype(str).to_numpy()
    guess = predictions["prediction"].astype(str).to_numpy()
    recalls, counts = {}, {}
    for label in map(str, classes):
        mask = truth == label
        if mask.sum():
            recalls[label] = float((guess[mask] == label).mean())
            counts[label] = int(mask.sum())
    if len(recalls) < 2:
        return None
    worst = min(recalls, key=recalls.get)
    ratio = min(counts.values()) / max(counts.values())
    if recalls[worst] >= 0.5 or ratio >= 0.5:
        return None
    return Finding(
        "class_imbalance", "warning",
        f"class {worst!r} ({counts[worst]} test rows) is recalled {recalls[worst]:.0%} of the time; the"
        f" classes are imbalanced (smallest/largest {ratio:.2f})",
        evidence={"recall": recalls, "test_counts": counts},
        fix=("train.class_weights={<class>: <weight>} from public knowledge, or train.loss=focal" if private
             else "train.class_weights=balanced, train.loss=focal, or train.resample.method=smote"))


def check_leakage(history: Sequence[dict], audit: dict | None, task: str) -> list[Finding]:
    """Leakage the audit found, and validation scores too good to be true from the first epoch."""
    out = []
    for finding in (audit or {}).get("findings", []):
        if finding["check"] in ("target_leakage", "duplicates_across_splits"):
            out.append(Finding("suspected_leakage", "error", f"the audit found: {finding['message']}",
                               column=finding.get("column"), evidence=finding.get("evidence", {}),
                               fix=finding.get("fix")))
    key = {"binary": "val_roc_auc", "multiclass": "val_accuracy", "regression": "val_r2"}.get(task)
    if history and key and history[0].get(key) is not None and history[0][key] >= 0.999:
        out.append(Finding(
            "suspected_leakage", "warning",
            f"{key} was {history[0][key]:.4f} after the first epoch: near-perfect scores this early usually"
            " mean a column gives the answer away", evidence={key: history[0][key]},
            fix="run fitwell audit on the data and look at the single-column scores (alone)"))
    return out


def dead_unit_shares(module: nn.Module, numeric: torch.Tensor, codes: torch.Tensor,
                     max_rows: int = 2048, inputs: dict | None = None) -> dict[str, dict[str, Any]]:
    """For each ReLU module: how many units output zero on every one of up to ``max_rows`` rows."""
    relus = [(name, m) for name, m in module.named_modules() if isinstance(m, nn.ReLU)]
    if not relus or len(numeric) == 0:
        return {}
    alive: dict[str, torch.Tensor] = {}

    def hook(name):
        def record(_module, _inputs, output):
            flat = output.detach().reshape(output.shape[0], -1)
            seen = (flat > 0).any(dim=0)
            alive[name] = seen if name not in alive else alive[name] | seen
        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in relus]
    was_training = module.training
    module.eval()
    try:
        rows = min(len(numeric), max_rows)
        device = next(module.parameters()).device
        with torch.no_grad():
            for start in range(0, rows, 512):
                stop = min(rows, start + 512)
                module(numeric[start:stop].to(device), codes[start:stop].to(device),
                       **{k: v[start:stop].to(device) for k, v in (inputs or {}).items()})
    finally:
        for handle in handles:
            handle.remove()
        module.train(was_training)
    return {name: {"units": int(seen.numel()), "dead": int((~seen).sum()),
                   "share": float((~seen).float().mean()), "rows": rows} for name, seen in alive.items()}


def diagnose(history: Sequence[dict], config, *, task: str, diverged: bool = False,
             stop_reason: str | None = None, best_epoch: int | None = None,
             class_counts: Sequence[int] | None = None, activations: dict | None = None,
             audit: dict | None = None, predictions=None, classes: list | None = None) -> list[Finding]:
    """Every check over one run, most severe first.

    Example:
        >>> from fitwell.config import load_config
        >>> rows = [{"epoch": i + 1, "train_loss": 0.5 - 0.05 * i, "val_loss": v}
        ...         for i, v in enumerate([0.5, 0.4, 0.45, 0.5, 0.55, 0.6])]
        >>> [f.check for f in diagnose(rows, load_config({}), task="binary")]
        ['overfitting']
    """
    lr = config.train.lr if isinstance(config.train.lr, (int, float)) else 1e-3
    found: list[Finding | None] = [check_divergence(history, diverged, stop_reason, lr)]
    baseline = baseline_loss(task, class_counts, config.preprocess.scale_target)
    if not found[0]:
        found += [check_worse_than_baseline(history, baseline, config, best_epoch),
                  check_spikes(history, lr), check_overfitting(history, config),
                  check_underfitting(history, baseline, config),
                  check_slow_learning(history, lr), check_patience(history, config, best_epoch)]
    found += [check_gradients(history), check_dead_units(activations)]
    if task != "regression":
        private = getattr(config, "privacy", None) is not None
        found.append(check_minority_recall(predictions, classes or [], private))
    found += check_leakage(history, audit, task)
    return sort_findings(f for f in found if f is not None)
