"""A member's probability calibrator (scikit-learn's CalibratedClassifierCV over the member's
probabilities, evaluate/calibration.py) as ONNX graph ops: Platt's sigmoid, or isotonic regression's
piecewise-linear curve written as a sum of clipped ramps; binary calibrates the positive column,
multiclass each column and renormalises, as ``_CalibratedClassifier.predict_proba`` does."""

from __future__ import annotations

import numpy as np

from fitwell.errors import UserError


def curve(g, calibrator, column: str, name: str) -> str:
    """One fitted calibrator applied to a [N, 1] column of probabilities."""
    kind = type(calibrator).__name__
    if kind == "_SigmoidCalibration":  # expit(-(a * p + b))
        z = g.op("Add", [g.op("Mul", [column, g.const(float(calibrator.a_), np.float64)]),
                         g.const(float(calibrator.b_), np.float64)])
        return g.op("Sigmoid", [g.op("Neg", [z])])
    if kind == "IsotonicRegression":  # np.interp(clip(p, x0, xn), x, y)
        x = np.asarray(calibrator.X_thresholds_, dtype=np.float64)
        y = np.asarray(calibrator.y_thresholds_, dtype=np.float64)
        width = np.diff(x)
        keep = width > 0
        if not keep.any():
            flat = g.op("Mul", [column, g.const(0.0, np.float64)])
            return g.op("Add", [flat, g.const(float(y[0]), np.float64)])
        start, width = x[:-1][keep], width[keep]
        slope = np.diff(y)[keep] / width
        ramp = g.op("Min", [g.op("Max", [g.op("Sub", [column, g.const(start[None, :], np.float64)]),
                                         g.const(0.0, np.float64)]), g.const(width[None, :], np.float64)])
        rise = g.op("ReduceSum", [g.op("Mul", [ramp, g.const(slope[None, :], np.float64)]),
                                  g.const([1], np.int64)], keepdims=1)
        return g.op("Add", [rise, g.const(float(y[0]), np.float64)])
    raise UserError(f"ensemble member {name!r}: calibration by {kind} cannot be exported to ONNX")


def calibrated(g, calibrator, proba: str, classes: int, name: str) -> str:
    """The calibrated probabilities [N, classes] from the member's [N, classes]."""
    (fitted,) = calibrator.calibrated_classifiers_
    one = g.const(1.0, np.float64)
    if classes == 2:
        second = g.op("Gather", [proba, g.const([1], np.int64)], axis=1)
        positive = curve(g, fitted.calibrators[0], second, name)
        out = g.op("Concat", [g.op("Sub", [one, positive]), positive], axis=1)
    else:
        columns = [curve(g, c, g.op("Gather", [proba, g.const([k], np.int64)], axis=1), name)
                   for k, c in enumerate(fitted.calibrators)]
        raw = g.op("Concat", columns, axis=1)
        total = g.op("ReduceSum", [raw, g.const([1], np.int64)], keepdims=1)
        zero = g.op("Equal", [total, g.const(0.0, np.float64)])
        shared = g.op("Div", [raw, g.op("Where", [zero, one, total])])
        out = g.op("Where", [zero, g.const(1.0 / classes, np.float64), shared])
    barely_over = g.op("And", [g.op("Greater", [out, one]),
                               g.op("LessOrEqual", [out, g.const(1.0 + 1e-5, np.float64)])])
    return g.op("Where", [barely_over, one, out])
