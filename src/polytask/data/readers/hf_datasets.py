"""Hugging Face ``datasets``: a ``save_to_disk`` folder, or a hub dataset where a network exists.

Columns are named (``data.columns.text`` etc.); unset, ``text`` / ``text_pair`` / ``label`` are
used, and ``tokens`` / ``ner_tags`` (or ``tags``) for token-level tasks. ClassLabel columns are
turned into their names (``-1``, the hub's "no label" for test splits, into None), so labels read
the same as from text files. Other columns go to ``Example.meta``. ``Example.where`` is
``path[split]:row`` with 1-based rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from polytask.data.example import Example
from polytask.data.readers.base import READERS, Reader
from polytask.data.readers.common import as_label, make_example
from polytask.errors import DataError

SAVED_MARKERS = ("dataset_info.json", "dataset_dict.json", "state.json")


def is_saved_dataset(path: str | Path) -> bool:
    """True for a folder written by ``Dataset.save_to_disk`` or ``DatasetDict.save_to_disk``."""
    path = Path(path)
    return path.is_dir() and any((path / n).is_file() for n in SAVED_MARKERS)


@READERS.register("hf")
class HfDatasetReader(Reader):
    """A saved Dataset or DatasetDict (``read``), or a hub dataset (``read_hub``)."""

    def read(self, path: str | Path, split: str = "train") -> list[Example]:
        """Read a ``save_to_disk`` folder.

        Args:
            path: the folder.
            split: the split to read when the folder holds a DatasetDict (``data.hf_splits``
                maps train/dev/test to these names); ignored for a single Dataset.
        """
        from datasets import DatasetDict, load_from_disk

        p = Path(path)
        if not is_saved_dataset(p):
            what = "not found" if not p.exists() else "not a saved Hugging Face dataset (no dataset_info.json / dataset_dict.json)"
            raise DataError(f"{what}; data paths are relative to the experiment file", path=str(p))
        try:
            ds = load_from_disk(str(p))
        except Exception as exc:  # noqa: BLE001 - the library raises many kinds here
            raise DataError(f"cannot load this saved dataset: {exc}", path=str(p)) from exc
        if isinstance(ds, DatasetDict):
            if split not in ds:
                raise DataError(
                    f"no split {split!r} in this dataset (splits: {', '.join(ds)}); set "
                    "data.hf_splits, e.g. {train: train, dev: validation}",
                    path=str(p),
                )
            ds = ds[split]
        return self.convert(ds, f"{p}[{split}]")

    def read_hub(self, split: str) -> list[Example]:
        """Read split ``split`` of ``data.hf_name`` (``data.hf_config``) from the hub or cache."""
        from datasets import load_dataset

        cfg = self.config
        _fail_fast_offline(cfg.hf_name)
        try:
            ds = load_dataset(cfg.hf_name, cfg.hf_config, split=split)
        except Exception as exc:  # noqa: BLE001 - the library raises many kinds here
            raise DataError(
                f"cannot load Hugging Face dataset {cfg.hf_name!r} split {split!r}: {exc}. "
                "Hub datasets need a network or a local cache; where there is none, save the "
                "dataset with save_to_disk elsewhere and point data.train at the folder"
            ) from exc
        return self.convert(ds, f"{cfg.hf_name}[{split}]")

    def convert(self, ds: Any, name: str) -> list[Example]:
        """Examples from one ``datasets.Dataset``; ``name`` prefixes each ``where``."""
        cols = self.config.columns
        names = list(ds.column_names)
        text_col = cols.text if cols.text is not None else ("tokens" if self.token_level else "text")
        pair_col = cols.text_pair if cols.text_pair is not None else ("text_pair" if "text_pair" in names else None)
        label_col = cols.label
        if label_col is None:
            candidates = ("ner_tags", "tags", "label") if self.token_level else ("label",)
            label_col = next((c for c in candidates if c in names), None)
        for role, col in (("text", text_col), ("text_pair", pair_col), ("label", label_col)):
            if col is None:
                continue
            if not isinstance(col, str):
                raise DataError(f"columns of a HF dataset are named, not numbered (data.columns.{role})", name)
            if col not in names:
                raise DataError(f"no column {col!r} (columns: {', '.join(names)}); set data.columns.{role}", name)
        class_names = _class_names(ds.features.get(label_col)) if label_col else None
        used = {text_col, pair_col, label_col}
        # Column-wise access is much faster than iterating rows as dicts.
        data = {c: list(ds[c]) for c in names}
        out = []
        for i in range(len(ds)):
            label = data[label_col][i] if label_col else None
            if class_names is not None:
                label = _names_of(label, class_names)
            meta = {c: data[c][i] for c in names if c not in used}
            out.append(make_example(
                data[text_col][i], data[pair_col][i] if pair_col else None, as_label(label),
                self.config, name, i + 1, text_col, pair_col, meta,
            ))
        return out


def _names_of(value: Any, class_names: list[str]) -> Any:
    """ClassLabel ids to names; -1 (no label) to None."""
    if isinstance(value, list):
        return [_names_of(v, class_names) for v in value]
    if value is None or value == -1:
        return None
    return class_names[value]


def _class_names(feature: Any) -> list[str] | None:
    """Names of a ClassLabel feature, or of a Sequence/List of ClassLabel (token tags)."""
    inner = getattr(feature, "feature", None)
    if isinstance(feature, list) and feature:
        inner = feature[0]
    for f in (feature, inner):
        names = getattr(f, "names", None)
        if names:
            return list(names)
    return None


def _fail_fast_offline(name: str) -> None:
    """Without a network and without a cached copy, say so at once (the download would retry for
    about 23 s before the same conclusion)."""
    from polytask.hub import offline_reason

    reason = offline_reason(timeout=2.0)
    if reason is None:
        return
    import datasets
    from huggingface_hub import constants

    cached = [Path(datasets.config.HF_DATASETS_CACHE) / name.replace("/", "___"),
              Path(constants.HF_HUB_CACHE) / f"datasets--{name.replace('/', '--')}"]
    if any(p.is_dir() for p in cached):
        return
    raise DataError(
        f"cannot load Hugging Face dataset {name!r}: it is not in the local cache, and the Hub cannot be "
        f"reached: {reason}. Save the dataset with save_to_disk where there is a network and point "
        "data.train at the folder"
    )
