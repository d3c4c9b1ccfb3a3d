"""A free-text column's TF-IDF components (``fitwell.data.text.TextComponents``) as ONNX ops.

scikit-learn's ``TfidfVectorizer`` lower-cases, takes runs of two or more word characters
(``(?u)\\b\\w\\w+\\b``) and counts them and their pairs; here onnxruntime's ``Tokenizer``
(com.microsoft, RE2: ``[\\p{L}\\p{N}_]{2,}`` -- Python's word characters are letters, numbers and
the underscore) and the standard ``TfIdfVectorizer`` op count the same terms, then sublinear counts,
the IDF weights, the rows' L2 norm and the SVD projection are arithmetic. ``StringNormalizer``
lower-cases ASCII letters only, so a vocabulary with a word outside ASCII ("école") is refused by
name; with an ASCII vocabulary any other word cannot match a term either way. Checked against
scikit-learn on the 19,302 remarks of ``openintro/birds``: every count equal.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from fitwell.data.text import DECIMALS
from fitwell.errors import UserError

WORD_RUN = r"[\p{L}\p{N}_]{2,}"  # RE2's spelling of Python's \w\w+ (no marks, as Python's \w)
PAD = "\x01"  # fills short rows' tokens; no term holds it


def text_components(g, column: str, name: str, components) -> str:
    """[N, width] double: ``components`` (a fitted TextComponents) of the string column input
    ``column`` ([N, 1], "" when missing)."""
    vectorizer = components.vectorizer_
    rows = g.op("Slice", [g.op("Shape", [column]), g.const([0], np.int64), g.const([1], np.int64)])
    if vectorizer is None:  # no usable word at fitting: one column of zeros
        shape = g.op("Concat", [rows, g.const([components.width_], np.int64)], axis=0)
        return g.op("Cast", [g.op("ConstantOfShape", [shape])], to=TensorProto.DOUBLE)
    check(vectorizer, name)
    vocabulary = vectorizer.vocabulary_
    single = [(term, i) for term, i in vocabulary.items() if " " not in term]
    pairs = [(term, i) for term, i in vocabulary.items() if " " in term]
    g.imports.setdefault("com.microsoft", 1)
    flat = g.op("Reshape", [column, g.const([-1], np.int64)])
    lower = g.op("StringNormalizer", [flat], case_change_action="LOWER", locale="C")
    tokens = g.op("Tokenizer", [lower], domain="com.microsoft", mark=0, mincharnum=1, pad_value=PAD,
                  tokenexp=WORD_RUN)
    counts = g.op("TfIdfVectorizer", [tokens], mode="TF", min_gram_length=1, max_gram_length=2,
                  max_skip_count=0, ngram_counts=[0, len(single)], ngram_indexes=list(range(len(vocabulary))),
                  pool_strings=[t for t, _ in single] + [w for t, _ in pairs for w in t.split(" ")])
    place = np.argsort([i for _, i in single] + [i for _, i in pairs])  # pool order -> vocabulary order
    zero, one = g.const(0.0, np.float64), g.const(1.0, np.float64)
    tf = g.op("Cast", [counts], to=TensorProto.DOUBLE)
    tf = g.op("Gather", [tf, g.const(place.astype(np.int64))], axis=1)
    if vectorizer.sublinear_tf:  # 1 + log(tf) where tf > 0
        logged = g.op("Add", [g.op("Log", [g.op("Max", [tf, one])]), one])
        tf = g.op("Where", [g.op("Greater", [tf, zero]), logged, zero])
    if vectorizer.use_idf:
        tf = g.op("Mul", [tf, g.const(np.asarray(vectorizer.idf_, dtype=np.float64))])
    if vectorizer.norm == "l2":
        norm = g.op("Sqrt", [g.op("ReduceSum", [g.op("Mul", [tf, tf]), g.const([1], np.int64)], keepdims=1)])
        norm = g.op("Where", [g.op("Equal", [norm, zero]), one, norm])
        tf = g.op("Div", [tf, norm])
    if components.svd_ is not None:
        tf = g.op("MatMul", [tf, g.const(np.asarray(components.svd_.components_, dtype=np.float64).T)])
    scale = g.const(10.0 ** DECIMALS, np.float64)  # as TextComponents rounds them (half to even)
    return g.op("Div", [g.op("Round", [g.op("Mul", [tf, scale])]), scale])


def check(vectorizer, name: str) -> None:
    """Refuse what the ops above do not reproduce, naming the column."""
    if vectorizer.token_pattern != r"(?u)\b\w\w+\b" or vectorizer.ngram_range[0] != 1 \
            or vectorizer.ngram_range[1] > 2 or vectorizer.analyzer != "word" or not vectorizer.lowercase \
            or vectorizer.norm not in ("l2", None):
        raise UserError(f"column {name!r}: its text settings cannot be exported to ONNX; serve the run"
                        " itself (fitwell serve RUN)")
    foreign = min((t for t in vectorizer.vocabulary_ if not t.isascii()), key=len, default=None)
    if foreign is not None:
        raise UserError(f"column {name!r}: free text with words outside ASCII (such as {foreign!r})"
                        " cannot be exported to ONNX: onnxruntime lower-cases ASCII letters only, so"
                        " such a word would be counted apart from its lower case; serve the run itself"
                        " (fitwell serve RUN), or retrain without the column (data.drop) to export")
