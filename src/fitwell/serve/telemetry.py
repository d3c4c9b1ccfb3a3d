"""The server's Prometheus metrics: requests and errors by route and status, latency, rows
predicted and the distribution of what was predicted (one registry per server)."""

from __future__ import annotations

import pandas as pd
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
PROBABILITY_BUCKETS = tuple(i / 10 for i in range(1, 11))
ROUTES = ("/predict", "/health", "/ready", "/schema", "/metrics", "/drift", "/docs", "/openapi.json")


class Telemetry:
    """Counters and histograms of one server, in Prometheus' text format on ``/metrics``."""

    def __init__(self, task: str, classes: list | None):
        self.task = task
        self.registry = CollectorRegistry()
        self.requests = Counter("fitwell_requests", "HTTP requests by route and status code",
                                ["route", "status"], registry=self.registry)
        self.errors = Counter("fitwell_request_errors", "Requests answered 4xx or 5xx, by route",
                              ["route", "status"], registry=self.registry)
        self.latency = Histogram("fitwell_request_seconds", "Time from request to response, by route",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.rows = Counter("fitwell_predicted_rows", "Rows predicted", registry=self.registry)
        self.classes = Counter("fitwell_predicted_class", "Predicted labels", ["label"],
                               registry=self.registry)
        # binary: the positive class's probability; regression: the predicted value
        if task == "regression":
            self.distribution = Histogram("fitwell_prediction_value", "Predicted values",
                                          buckets=value_buckets(), registry=self.registry)
        else:
            self.distribution = Histogram("fitwell_prediction_confidence",
                                          "Probability of the predicted label", buckets=PROBABILITY_BUCKETS,
                                          registry=self.registry)

        self.drift_share = Gauge("fitwell_drift_share", "Share of input columns drifted in the latest rows",
                                 registry=self.registry)
        self.feature_drift = Gauge("fitwell_feature_drift", "1 when a column (or the predictions) drifted",
                                   ["column"], registry=self.registry)
        self.feature_psi = Gauge("fitwell_feature_psi", "Population stability index against training",
                                 ["column"], registry=self.registry)

    def drifted(self, result: dict) -> None:
        """Set the drift gauges from a fitwell.evaluate.drift comparison."""
        self.drift_share.set(result["share_drifted"])
        from fitwell.evaluate.drift import compared_columns

        for name, column in compared_columns(result).items():
            self.feature_drift.labels(name).set(1.0 if column["drift"] else 0.0)
            if "psi" in column:
                self.feature_psi.labels(name).set(column["psi"])

    def observe(self, path: str, status: int, seconds: float) -> None:
        route = path if path in ROUTES else "other"  # unknown paths do not grow the label set
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)
        if status >= 400:
            self.errors.labels(route, str(status)).inc()

    def predicted(self, table: pd.DataFrame) -> None:
        self.rows.inc(len(table))
        if self.task == "regression":
            for value in table["prediction"]:
                self.distribution.observe(float(value))
            return
        for label, count in table["prediction"].astype(str).value_counts().items():
            self.classes.labels(label).inc(int(count))
        probabilities = table[[c for c in table.columns if c.startswith("proba_")]].max(axis=1)
        for value in probabilities:
            self.distribution.observe(float(value))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def value_buckets() -> tuple[float, ...]:
    """Wide, sign-symmetric buckets: regression targets come in any unit."""
    positive = [10.0 ** k * m for k in range(-2, 7) for m in (1, 2.5, 5)]
    return tuple(sorted([-v for v in positive] + [0.0] + positive))
