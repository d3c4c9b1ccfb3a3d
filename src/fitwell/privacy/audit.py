"""How much a trained model leaks about its training rows: membership-inference attacks.

The attacker gets a row and the model's output and guesses whether the row was trained on. Two
attacks need only the model: the **loss** attack (a low loss says member; Yeom et al. 2018) and
the **confidence** attack (a confident prediction says member, no label needed). The
**reference** attack calibrates each row's difficulty (Watson et al. 2022, a shadow model in the
sense of Shokri et al. 2017): a model of the same config trained on half of the held-out rows
tells how hard a row is for a model that never saw it; the score is its loss minus the target
model's. Members are the run's training rows, non-members its test and validation rows (in
equal numbers, sampled with the seed; the reference attack is scored on the held-out half its
model did not train on).

Each attack reports ROC AUC, TPR at 1% and 0.1% FPR (Carlini et al. 2022) and the largest
membership advantage (TPR - FPR). The **empirical lower bound on epsilon** (Jagielski et al.
2020; Nasr et al. 2021): an (epsilon, delta)-DP model forces TPR <= e^eps FPR + delta and
1 - FPR <= e^eps (1 - TPR) + delta for every threshold; the threshold is chosen on one half of the
rows and the bound computed on the other half with 95% Clopper-Pearson intervals, so the bound is
valid rather than a maximum over noise. A claimed epsilon below the lower bound is a bug.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def row_losses(task: str, output: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Each row's loss: cross-entropy of the true class, or the squared error."""
    if task == "regression":
        return (output.reshape(-1) - target.reshape(-1)) ** 2
    from fitwell.evaluate.metrics import probabilities

    probs = probabilities(task, output)
    return -np.log(np.clip(probs[np.arange(len(target)), target.astype(int)], 1e-12, 1.0))


def confidences(task: str, output: np.ndarray) -> np.ndarray | None:
    if task == "regression":
        return None
    from fitwell.evaluate.metrics import probabilities

    return probabilities(task, output).max(axis=1)


def attack_scores(scores: np.ndarray, member: np.ndarray) -> dict[str, float]:
    """ROC AUC, TPR at low FPR and the advantage of an attack whose higher score says member."""
    from sklearn.metrics import roc_auc_score, roc_curve

    fpr, tpr, _ = roc_curve(member, scores)
    at = {f"tpr_at_{name}_fpr": float(np.max(tpr[fpr <= level], initial=0.0))
          for name, level in (("1%", 0.01), ("0.1%", 0.001))}
    return {"roc_auc": round(float(roc_auc_score(member, scores)), 4),
            **{k: round(v, 4) for k, v in at.items()}, "advantage": round(float(np.max(tpr - fpr)), 4)}


def epsilon_lower_bound(scores: np.ndarray, member: np.ndarray, delta: float, seed: int) -> float:
    """The 95%-confidence lower bound on epsilon from the best threshold of one half, counted on
    the other half (see the module's docstring)."""
    rng = np.random.default_rng(seed)
    half = rng.random(len(scores)) < 0.5
    threshold = _best_threshold(scores[half], member[half], delta)
    held_scores, held_member = scores[~half], member[~half]
    guessed = held_scores >= threshold
    positives, negatives = int(held_member.sum()), int((~held_member).sum())
    true_pos, false_pos = int((guessed & held_member).sum()), int((guessed & ~held_member).sum())
    tpr_low = _clopper_pearson(true_pos, positives)[0]
    fpr_high = _clopper_pearson(false_pos, negatives)[1]
    tnr_low = _clopper_pearson(negatives - false_pos, negatives)[0]
    fnr_high = _clopper_pearson(positives - true_pos, positives)[1]
    bounds = [_log_ratio(tpr_low - delta, fpr_high), _log_ratio(tnr_low - delta, fnr_high)]
    return max(0.0, *bounds)


def _best_threshold(scores: np.ndarray, member: np.ndarray, delta: float) -> float:
    best, best_eps = float(np.inf), -np.inf
    positives, negatives = max(1, int(member.sum())), max(1, int((~member).sum()))
    for threshold in np.unique(np.quantile(scores, np.linspace(0.01, 0.99, 99))):
        guessed = scores >= threshold
        tpr = (guessed & member).sum() / positives
        fpr = max((guessed & ~member).sum(), 1) / negatives
        eps = max(_log_ratio(tpr - delta, fpr), _log_ratio(1 - fpr - delta, max(1 - tpr, 1 / positives)))
        if eps > best_eps:
            best, best_eps = float(threshold), eps
    return best


def _log_ratio(top: float, bottom: float) -> float:
    return math.log(top / bottom) if top > 0 and bottom > 0 else 0.0


def _clopper_pearson(successes: int, trials: int, level: float = 0.95) -> tuple[float, float]:
    from scipy.stats import beta

    if trials == 0:
        return 0.0, 1.0
    tail = (1 - level) / 2
    low = beta.ppf(tail, successes, trials - successes + 1) if successes else 0.0
    high = beta.ppf(1 - tail, successes + 1, trials - successes) if successes < trials else 1.0
    return float(low), float(high)


def audit_membership(task: str, member_out: np.ndarray, member_y: np.ndarray, other_out: np.ndarray,
                     other_y: np.ndarray, seed: int = 0, delta: float = 1e-5,
                     reference: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> dict[str, Any]:
    """The attacks on ``member`` rows (trained on) against ``other`` rows (never seen), in equal
    numbers; ``reference``: a reference model's outputs on the members and on the non-members,
    and which non-members it trained on (left out of its attack)."""
    rng = np.random.default_rng(seed)
    n = min(len(member_out), len(other_out))
    pick_m, pick_o = rng.permutation(len(member_out))[:n], rng.permutation(len(other_out))[:n]
    losses = np.concatenate([row_losses(task, member_out[pick_m], member_y[pick_m]),
                             row_losses(task, other_out[pick_o], other_y[pick_o])])
    member = np.concatenate([np.ones(n, bool), np.zeros(n, bool)])
    attacks = {"loss": attack_scores(-losses, member)}
    bounds = {"loss": epsilon_lower_bound(-losses, member, delta, seed)}
    conf = confidences(task, np.concatenate([member_out[pick_m], other_out[pick_o]]))
    if conf is not None:
        attacks["confidence"] = attack_scores(conf, member)
        bounds["confidence"] = epsilon_lower_bound(conf, member, delta, seed)
    if reference is not None:
        on_members, on_others, trained = reference
        keep = np.concatenate([np.ones(n, bool), ~trained[pick_o]])
        ref = np.concatenate([row_losses(task, on_members[pick_m], member_y[pick_m]),
                              row_losses(task, on_others[pick_o], other_y[pick_o])])
        calibrated = (ref - losses)[keep]
        attacks["reference"] = attack_scores(calibrated, member[keep])
        bounds["reference"] = epsilon_lower_bound(calibrated, member[keep], delta, seed)
    best = max(bounds, key=bounds.get)
    return {"members": n, "non_members": n, "attacks": attacks, "epsilon_lower_bounds": bounds,
            "epsilon_lower_bound": round(bounds[best], 4), "strongest": best, "delta": delta}
