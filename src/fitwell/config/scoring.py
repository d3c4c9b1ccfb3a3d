"""Config sections of what happens after training: calibration, explanations, drift thresholds."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from fitwell.config.section import Section


class CalibrationConfig(Section):
    """Probability calibration of classifiers, fitted on the validation split."""

    method: Literal["none", "temperature"] = "none"
    bins: int = Field(10, ge=2, description="Bins of the saved reliability curve")


class ExplainConfig(Section):
    """Explanations computed on the test split at the end of training."""

    permutation: bool = False
    repeats: int = Field(5, ge=1)
    map: Literal["pca", "umap"] = Field("pca", description="Unsupervised runs: the report's 2-D map of the"
                                                          " rows; umap needs pip install 'fitwell[umap]'")


class MonitorConfig(Section):
    """Drift thresholds of ``fitwell monitor`` (and the server's ``/drift``). A feature drifts when
    its change is both significant (p < ``p_value``) and large enough to matter (an effect size
    over its threshold): at large n a test alone flags every harmless wobble."""

    p_value: float = Field(0.01, gt=0, lt=1, description="Significance level of the KS / chi-square tests")
    wasserstein: float = Field(0.1, gt=0, description="Numbers: Wasserstein distance over the training"
                                                      " standard deviation")
    psi: float = Field(0.2, gt=0, description="Numbers: population stability index on training deciles")
    categories: float = Field(0.05, gt=0, le=1, description="Categories: total variation distance of"
                                                            " the category shares")
    missing: float = Field(0.05, gt=0, le=1, description="Change in the share of missing values")
    new_categories: float = Field(0.01, gt=0, le=1, description="Share of rows with a category training"
                                                                " never saw")
    performance: float = Field(0.02, ge=0, description="With labels: alert when the primary metric is"
                                                       " worse than the test split's by more than this and"
                                                       " its 95% interval excludes the test value")
