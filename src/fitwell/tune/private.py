"""The end of a private search (``fitwell.privacy.select``): the best trial kept as trained and
one epsilon for the whole search."""

from __future__ import annotations

from pathlib import Path

from fitwell.config.schema import RunConfig


def finish_private(config: RunConfig, study, best, folder: Path, data, say, mean_trials: float,
                   metrics: list[str], directions: list[str]) -> dict:
    """A private search's result: the best trial's run as trained (a retrain would spend more),
    its test split scored once, and the epsilon of the whole search (``fitwell.privacy.select``)."""
    from fitwell.pipeline import score_saved_run
    from fitwell.privacy.select import selection_epsilon, trial_rdp
    from fitwell.tune.report import write_outputs

    path = folder / f"trial-{best.number}"
    say(f"keeping trial {best.number} as it was trained; scoring the test split once")
    test, trial = score_saved_run(path, data)
    epsilon = selection_epsilon(trial_rdp(trial), mean_trials, trial["delta"])
    say(f"privacy: the whole search is ({epsilon:.3g}, {trial['delta']:.0e})-DP (each trial"
        f" epsilon {trial['epsilon']:g}; best of a geometric number of trials, mean {mean_trials:g})")
    summary = {
        "study": study.study_name, "metric": metrics, "directions": directions,
        "best_trial": best.number, "best_params": dict(best.user_attrs["overrides"]),
        "best_validation": best.value, "test": test, "best_run": str(path), "trials": len(study.trials),
        "test_note": "the test split was scored once, by the best trial's model, after tuning",
        "privacy": {"epsilon": round(epsilon, 4), "delta": trial["delta"], "trial_epsilon": trial["epsilon"],
                    "mean_trials": mean_trials,
                    "distribution": "truncated negative binomial, eta 1 (geometric)",
                    "accounting": "Papernot & Steinke 2022, Theorem 2 (RDP)",
                    "released_score": "each trial's " + metrics[0] + " with Laplace noise, epsilon"
                                      f" {config.privacy.score_epsilon:g}",
                    "not_covered": ["the study folder: every trial's run, score and their number"]},
    }
    write_outputs(study, folder, summary)
    return summary
