"""From a task's ``data`` config to its splits: format inference, reading, seeded dev split."""

from __future__ import annotations

from pathlib import Path

from polytask.config.schema import DataConfig
from polytask.data.example import Example
from polytask.data.readers import READERS
from polytask.data.readers.hf_datasets import HfDatasetReader, is_saved_dataset
from polytask.data.splits import seeded_subset, train_dev_split
from polytask.errors import DataError

EXTENSIONS = {
    ".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl",
    ".conll": "conll", ".iob": "conll", ".bio": "conll",
}


def resolve_format(config: DataConfig, path: str, token_level: bool) -> str:
    """The reader for ``path``: ``data.format`` when set, else inferred from the path.

    ``.txt`` files are CoNLL token files for token-level tasks and ``label text`` lines otherwise;
    a folder is a saved HF dataset when it holds ``dataset_info.json``, else one file per document.
    """
    if config.format != "auto":
        return config.format
    p = Path(path)
    if p.is_dir():
        return "hf" if is_saved_dataset(p) else "folder"
    suffix = p.suffix.lower()
    if suffix == ".txt":
        return "conll" if token_level else "label_text"
    if suffix in EXTENSIONS:
        return EXTENSIONS[suffix]
    raise DataError(
        f"cannot tell the format from the extension {suffix or '(none)'!r}; set data.format to one of: "
        + ", ".join(READERS.names()),
        path=path,
    )


def read_file(config: DataConfig, path: str, token_level: bool, split: str = "train") -> list[Example]:
    fmt = resolve_format(config, path, token_level)
    reader = READERS.get(fmt, field="data.format")(config, token_level=token_level)
    examples = reader.read(path, split=split) if isinstance(reader, HfDatasetReader) else reader.read(path)
    if not examples:
        raise DataError(f"no examples in this {split} file", path=path)
    return examples


def load_splits(config: DataConfig, token_level: bool) -> dict[str, list[Example]]:
    """Read ``train``, ``dev`` and (when configured) ``test``.

    Without a dev file, a seeded (``data.split_seed``), stratified ``data.dev_fraction`` of train
    becomes dev. ``data.limit`` then keeps a seeded random subset of that many examples of each
    split (random, so a file sorted by label still yields every class).
    """
    splits: dict[str, list[Example]] = {}
    if config.hf_name and config.train is None:
        reader = HfDatasetReader(config, token_level=token_level)
        for split in ("train", "dev", "test"):
            name = config.hf_splits.get(split)
            if name is None:
                continue
            try:
                splits[split] = reader.read_hub(name)
            except DataError:
                if split == "train":
                    raise
    else:
        for split in ("train", "dev", "test"):
            path = getattr(config, split)
            if path is not None:
                hf_split = config.hf_splits.get(split, split)
                splits[split] = read_file(config, path, token_level, split=hf_split)
    if "dev" not in splits:
        if len(splits["train"]) < 2:
            raise DataError("too few training examples to hold out a dev set; add data.dev", path=config.train)
        splits["train"], splits["dev"] = train_dev_split(splits["train"], config.dev_fraction, config.split_seed)
    if config.limit:
        splits = {k: seeded_subset(v, config.limit, config.split_seed) for k, v in splits.items()}
    return splits
