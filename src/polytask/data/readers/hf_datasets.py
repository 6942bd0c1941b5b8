"""Hugging Face ``datasets``: a ``save_to_disk`` folder, or a hub dataset where a network exists.

ClassLabel columns are turned into their names, so labels read the same as from text files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from polytask.data.example import Example
from polytask.data.readers.base import READERS, Reader
from polytask.data.readers.common import make_example
from polytask.errors import DataError


def is_saved_dataset(path: Path) -> bool:
    return path.is_dir() and any((path / n).is_file() for n in ("dataset_info.json", "dataset_dict.json", "state.json"))


@READERS.register("hf")
class HfDatasetReader(Reader):
    """``read(path)``: a saved Dataset, or a DatasetDict whose split is chosen with ``split=``."""

    def read(self, path: str | Path, split: str = "train") -> list[Example]:
        from datasets import DatasetDict, load_from_disk

        p = Path(path)
        if not is_saved_dataset(p):
            raise DataError("not a saved Hugging Face dataset (no dataset_info.json / dataset_dict.json)",
                            path=str(p))
        ds = load_from_disk(str(p))
        if isinstance(ds, DatasetDict):
            if split not in ds:
                raise DataError(f"no split {split!r} in this dataset (splits: {', '.join(ds)})", path=str(p))
            ds = ds[split]
        return self.convert(ds, f"{p}[{split}]")

    def read_hub(self, split_name: str) -> list[Example]:
        from datasets import load_dataset

        cfg = self.config
        try:
            ds = load_dataset(cfg.hf_name, cfg.hf_config, split=split_name)
        except Exception as exc:  # noqa: BLE001 - the library raises many kinds here
            raise DataError(
                f"cannot load Hugging Face dataset {cfg.hf_name!r} split {split_name!r}: {exc}. "
                "Hub datasets need a network or a local cache; save one with save_to_disk and "
                "point data.train at the folder"
            ) from exc
        return self.convert(ds, f"{cfg.hf_name}[{split_name}]")

    def convert(self, ds: Any, name: str) -> list[Example]:
        cols = self.config.columns
        text_col = cols.text if cols.text is not None else ("tokens" if self.token_level else "text")
        label_col = cols.label if cols.label is not None else ("ner_tags" if self.token_level and "ner_tags" in ds.column_names else "label")
        pair_col = cols.text_pair if cols.text_pair is not None else ("text_pair" if "text_pair" in ds.column_names else None)
        for role, col in (("text", text_col), ("label", label_col), ("text_pair", pair_col)):
            if col is not None and not isinstance(col, str):
                raise DataError(f"{name}: columns of a HF dataset are named, not numbered (data.columns.{role})")
            if col is not None and col not in ds.column_names and role != "label":
                raise DataError(f"{name}: no column {col!r} (columns: {', '.join(ds.column_names)}); set data.columns.{role}")
        has_label = label_col in ds.column_names
        names = _class_names(ds.features.get(label_col)) if has_label else None
        out = []
        for i, row in enumerate(ds):
            label = row[label_col] if has_label else None
            if names is not None and label is not None:
                label = [names[t] for t in label] if isinstance(label, list) else names[label]
            elif isinstance(label, (int, float)) and not isinstance(label, bool):
                label = str(label)
            out.append(make_example(row[text_col], row[pair_col] if pair_col else None, label, self.config,
                                    f"{name}:{i}", text_col))
        return out


def _class_names(feature: Any) -> list[str] | None:
    """Names of a ClassLabel feature, or of a Sequence of ClassLabel (token tags)."""
    inner = getattr(feature, "feature", None)  # Sequence(ClassLabel)
    if isinstance(feature, list) and feature:
        inner = feature[0]
    for f in (feature, inner):
        names = getattr(f, "names", None)
        if names:
            return list(names)
    return None
