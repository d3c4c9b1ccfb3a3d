"""Free-text columns of a table (a review, a product title, a comment) as a few numbers.

A column whose values are mostly distinct would be dropped as an ID; when those values are phrases
that share their words, the words carry signal (a passenger's "Mrs.", a review's "refund"). Such a
column is read as text: TF-IDF of its words and word pairs seen in at least two training rows,
reduced by truncated SVD (latent semantic analysis) to at most 32 numbers that every model family
takes -- scikit-learn's ``TfidfVectorizer`` and ``TruncatedSVD``, fitted on the training rows only.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

DECIMALS = 12  # of the components (their values are at most 1 in size)
WORD = re.compile(r"(?u)\b[^\W\d_]{2,}\b")  # two or more letters: dates and codes have few


def looks_like_text(series: pd.Series) -> bool:
    """Phrases rather than codes: 3+ words (of two letters or more) a value on average, most
    values distinct (a category column repeats its values), words that recur across rows (an ID's
    parts do not), and spaces between them (a URL, an e-mail address or a file path has words that
    recur -- https, www, the site -- but is an identifier)."""
    values = series.dropna().astype(str)
    if len(values) < 20 or values.nunique() < 0.5 * len(values):
        return False
    if values.str.strip().str.contains(r"\s").mean() < 0.5:
        return False
    sample = values.sample(min(len(values), 500), random_state=0)
    words = [WORD.findall(v.lower()) for v in sample]
    total = sum(len(w) for w in words)
    if total < 3 * len(sample):
        return False
    return len({w for row in words for w in row}) <= 0.5 * total


class TextComponents(TransformerMixin, BaseEstimator):
    """One text column (a 1-column frame or array of strings, missing as "") as ``components``
    numbers: TF-IDF of words and word pairs (sublinear counts, terms in at least two training rows,
    at most ``max_terms``), then truncated SVD.

    Example:
        >>> rows = [["late refund please"], ["refund not received"], ["great fast delivery"],
        ...         ["fast delivery great price"]]
        >>> TextComponents(components=2).fit(rows).transform([["refund late"]]).shape
        (1, 2)
    """

    def __init__(self, components: int = 32, max_terms: int = 20_000, random_state: int = 0):
        self.components = components
        self.max_terms = max_terms
        self.random_state = random_state

    def fit(self, X, y=None):
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        text = self._text(X)
        self.vectorizer_, tfidf = None, None
        for least in (2, 1):  # terms in two rows; in one when no term is in two
            vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=least, max_features=self.max_terms,
                                         sublinear_tf=True, dtype=np.float64)
            try:
                tfidf = vectorizer.fit_transform(text)
            except ValueError:  # "empty vocabulary": no word of two letters
                continue
            self.vectorizer_ = vectorizer
            break
        width = 0 if tfidf is None else min(self.components, tfidf.shape[1] - 1, len(text) - 1)
        self.svd_ = TruncatedSVD(width, random_state=self.random_state).fit(tfidf) if width >= 1 else None
        if self.svd_ is not None:
            # Components past the training rows' rank are 0 on them up to rounding (5e-17) yet not on
            # new rows (unique addresses: few shared terms): a scaler blew that rounding up to +-3.
            values = self.svd_.singular_values_
            rank = int(np.sum(values > 1e-8 * values[0])) if values[0] > 0 else width
            if 1 <= rank < width:
                width = rank
                self.svd_ = TruncatedSVD(width, random_state=self.random_state).fit(tfidf)
        self.width_ = width if self.svd_ is not None else (0 if tfidf is None else tfidf.shape[1])
        self.width_ = max(self.width_, 1)  # no usable word: one column of zeros
        return self

    def transform(self, X):
        check_is_fitted(self, "width_")
        text = self._text(X)
        if self.vectorizer_ is None or not text:  # no usable word; no rows (an empty split)
            return np.zeros((len(text), self.width_))
        tfidf = self.vectorizer_.transform(text)
        out = self.svd_.transform(tfidf) if self.svd_ is not None else tfidf.toarray()
        # to 12 decimals: the same words in another order or row sum to values a last bit apart,
        # and a tree split between two such values ("NO DAMAGE" and " NO DAMAGE.") is noise
        return np.round(out, DECIMALS)

    def get_feature_names_out(self, input_features=None):
        name = input_features[0] if input_features is not None and len(input_features) else "text"
        return np.asarray([f"{name}.text{i}" for i in range(self.width_)], dtype=object)

    def __getstate__(self) -> dict:
        """The vocabulary as an array of terms: skops writes a dict entry by entry (20,000 terms took
        9 s and 20 MB to save, 3 s to load; as an array, well under a second)."""
        state = dict(super().__getstate__())  # BaseEstimator's is this object's own __dict__
        vectorizer = state.get("vectorizer_")
        if vectorizer is not None and hasattr(vectorizer, "vocabulary_"):
            vocabulary = vectorizer.vocabulary_
            stored = type(vectorizer).__new__(type(vectorizer))  # the fitted one keeps its vocabulary
            stored.__dict__.update({k: v for k, v in vars(vectorizer).items() if k != "vocabulary_"})
            vectorizer = stored
            terms = np.empty(len(vocabulary), dtype=object)
            for term, index in vocabulary.items():
                terms[index] = term
            state["vectorizer_"], state["terms_"] = vectorizer, terms.astype(str)
        return state

    def __setstate__(self, state: dict) -> None:
        state = dict(state)
        terms = state.pop("terms_", None)
        if terms is not None:
            state["vectorizer_"].vocabulary_ = {str(term): i for i, term in enumerate(terms)}
        super().__setstate__(state)

    @staticmethod
    def _text(X) -> list[str]:
        if isinstance(X, pd.DataFrame):
            column = X.iloc[:, 0]
        else:
            column = np.asarray(X, dtype=object).reshape(len(X), -1)[:, 0]
        return ["" if v is None or (isinstance(v, float) and v != v) else str(v) for v in column]
