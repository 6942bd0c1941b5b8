"""Reader family. Importing this package registers every member."""

from polytask.data.readers import conll, csv_tsv, hf_datasets, jsonl, text_files  # noqa: F401
from polytask.data.readers.base import READERS, Reader

__all__ = ["READERS", "Reader"]
