"""From a task's ``data`` config to its splits: format inference, reading, seeded dev split."""

from __future__ import annotations

from pathlib import Path

from polytask.config.schema import DataConfig
from polytask.data.example import Example
from polytask.data.readers import READERS
from polytask.data.readers.hf_datasets import HfDatasetReader, is_saved_dataset
from polytask.data.readers.squad import looks_like_squad
from polytask.data.splits import seeded_subset, train_dev_split
from polytask.errors import DataError

EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".ndjson": "jsonl",
    ".conll": "conll",
    ".iob": "conll",
    ".bio": "conll",
}
SPLITS = ("train", "dev", "test")


def resolve_format(config: DataConfig, path: str | Path, token_level: bool) -> str:
    """The reader name for ``path``: ``data.format`` when set, else inferred from the path.

    ``.csv`` -> csv; ``.tsv``/``.tab`` -> tsv; ``.jsonl``/``.json``/``.ndjson`` -> jsonl (a
    ``.json`` file holding one SQuAD-shaped object -> squad);
    ``.conll``/``.iob``/``.bio`` -> conll; ``.txt`` -> conll for token-level tasks and
    label_text otherwise; a folder holding ``dataset_info.json`` / ``dataset_dict.json`` /
    ``state.json`` -> hf, any other folder -> folder (one file per document).

    Args:
        config: the task's data config.
        path: the file or folder.
        token_level: whether the task tags tokens.
    """
    if config.format != "auto":
        return config.format
    if config.parallel is not None:
        return "parallel"
    p = Path(path)
    if p.is_dir():
        return "hf" if is_saved_dataset(p) else "folder"
    suffix = p.suffix.lower()
    if suffix == ".txt":
        return "conll" if token_level else "label_text"
    if suffix == ".json" and looks_like_squad(p):
        return "squad"
    if suffix in EXTENSIONS:
        return EXTENSIONS[suffix]
    if not p.exists():
        raise DataError(
            "file not found; data paths are relative to the experiment file", path=str(path)
        )
    raise DataError(
        f"cannot tell the format from the extension {suffix or '(none)'!r}; set data.format to "
        "one of: " + ", ".join(READERS.names()),
        path=str(path),
    )


def read_file(
    config: DataConfig, path: str | Path, token_level: bool, split: str = "train"
) -> list[Example]:
    """Read one file or folder with the task's data settings; an empty result is an error.

    Args:
        config: the task's data config (format, columns, encoding, label_map, ...).
        path: the file or folder.
        token_level: whether the task tags tokens.
        split: which split this is (train/dev/test): named in errors, and mapped through
            ``data.hf_splits`` to pick the split of a saved DatasetDict.
    """
    fmt = resolve_format(config, path, token_level)
    reader = READERS.get(fmt, field="data.format")(config, token_level=token_level)
    if isinstance(reader, HfDatasetReader):
        examples = reader.read(path, split=config.hf_splits.get(split, split))
    else:
        examples = reader.read(path)
    if not examples:
        raise DataError(f"no examples in this {split} file", path=str(path))
    return examples


def load_splits(config: DataConfig, token_level: bool) -> dict[str, list[Example]]:
    """Read a task's ``train``, ``dev`` and (when configured) ``test`` splits.

    Without ``data.dev``, a seeded (``data.split_seed``), stratified ``data.dev_fraction`` of train
    becomes dev. ``data.limit`` then keeps, of each split, a seeded random subset of that many
    examples (the first ``limit`` after a shuffle seeded with ``data.split_seed``, in file order):
    random so that a file sorted by label still yields every class, and nested, so a larger
    limit keeps everything a smaller one kept.

    With ``data.hf_name`` (and no ``data.train``) the splits come from the hub through
    ``data.hf_splits``; a dev or test split the dataset lacks is skipped (dev is then carved
    from train) unless ``data.hf_splits`` was written out explicitly.

    Args:
        config: the task's data config.
        token_level: whether the task tags tokens (CoNLL files, word lists).

    Returns:
        ``{"train": [...], "dev": [...]}`` plus ``"test"`` when configured.
    """
    splits: dict[str, list[Example]] = {}
    if config.hf_name and config.train is None:
        reader = HfDatasetReader(config, token_level=token_level)
        explicit = "hf_splits" in config.model_fields_set
        for split in SPLITS:
            name = config.hf_splits.get(split)
            if name is None:
                continue
            try:
                examples = reader.read_hub(name)
            except DataError:
                if split == "train" or explicit:
                    raise
                continue
            if not examples:
                raise DataError(f"split {name!r} of {config.hf_name!r} has no examples")
            splits[split] = examples
    else:
        for split in SPLITS:
            path = getattr(config, split)
            if path is not None:
                splits[split] = read_file(config, path, token_level, split=split)
    if "dev" not in splits:
        if len(splits["train"]) < 2:
            raise DataError(
                "too few training examples to hold out a dev set; add data.dev", path=config.train
            )
        splits["train"], splits["dev"] = train_dev_split(
            splits["train"], config.dev_fraction, config.split_seed
        )
    if config.limit:
        splits = {k: seeded_subset(v, config.limit, config.split_seed) for k, v in splits.items()}
    return splits
