"""Calendar parts of a date column: month, day of the month, weekday and hour.

A date column reaches the model as days since 1970-01-01 (``fitwell.data.columns.to_days``): a
trend over the years, but no season, payday or weekend -- a tree cannot cut "Saturday" out of a
day count in a few thousand rows. ``DateParts`` adds the parts that vary in the training rows.
The arithmetic is Howard Hinnant's ``civil_from_days`` in floating point (exact for any date a
float32 holds), the same steps ``fitwell export`` writes as ONNX ops, so a served graph and
``fitwell predict`` read a date the same way.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

PARTS = ("month", "day", "weekday", "hour")


def calendar(days: np.ndarray) -> dict[str, np.ndarray]:
    """Month (1-12), day of the month (1-31), weekday (0 Monday - 6 Sunday) and hour (0-24, with
    minutes as a fraction) of days since 1970-01-01; NaN stays NaN.

    Example:
        >>> parts = calendar(np.array([0.0, 19723.75, np.nan]))  # 1970-01-01, 2024-01-01 18:00
        >>> {k: v.tolist() for k, v in parts.items()}  # doctest: +NORMALIZE_WHITESPACE
        {'month': [1.0, 1.0, nan], 'day': [1.0, 1.0, nan], 'weekday': [3.0, 0.0, nan],
         'hour': [0.0, 18.0, nan]}
    """
    days = np.asarray(days, dtype=np.float64)
    whole = np.floor(days)
    z = whole + 719468.0  # days since 0000-03-01
    era = np.floor(z / 146097.0)
    doe = z - era * 146097.0  # day of the 400-year era
    leap = np.floor(doe / 1460.0) - np.floor(doe / 36524.0) + np.floor(doe / 146096.0)
    yoe = np.floor((doe - leap) / 365.0)  # year of the era
    doy = doe - (365.0 * yoe + np.floor(yoe / 4.0) - np.floor(yoe / 100.0))  # from March 1st
    mp = np.floor((5.0 * doy + 2.0) / 153.0)
    return {"month": np.where(mp < 10.0, mp + 3.0, mp - 9.0),
            "day": doy - np.floor((153.0 * mp + 2.0) / 5.0) + 1.0,
            "weekday": whole + 3.0 - 7.0 * np.floor((whole + 3.0) / 7.0),  # 1970-01-01 was a Thursday
            "hour": (days - whole) * 24.0}


class DateParts(TransformerMixin, BaseEstimator):
    """Calendar parts (``calendar``) of columns of days since 1970, each part kept only where it
    takes more than one value in the training rows (monthly data has no weekday worth a column,
    dates without a time no hour).

    Example:
        >>> days = np.array([[19723.0], [19724.0], [19755.0]])  # 2024-01-01, 01-02, 02-02
        >>> DateParts().fit(days).get_feature_names_out(["signed"]).tolist()
        ['signed.month', 'signed.day', 'signed.weekday']
    """

    def fit(self, X, y=None):
        X = np.asarray(X, dtype=np.float64)
        self.n_features_in_ = X.shape[1]
        self.parts_ = []  # (column index, part)
        for j in range(X.shape[1]):
            values = calendar(X[:, j])
            for part in PARTS:
                present = values[part][~np.isnan(values[part])]
                if len(np.unique(present)) > 1:
                    self.parts_.append((j, part))
        return self

    def transform(self, X):
        check_is_fitted(self, "parts_")
        X = np.asarray(X, dtype=np.float64)
        columns = [calendar(X[:, j]) for j in range(X.shape[1])]
        out = [columns[j][part] for j, part in self.parts_]
        return np.stack(out, axis=1) if out else np.zeros((len(X), 0))

    def get_feature_names_out(self, input_features=None):
        names = input_features
        if names is None:
            names = [f"x{i}" for i in range(self.n_features_in_)]
        return np.asarray([f"{names[j]}.{part}" for j, part in self.parts_], dtype=object)
