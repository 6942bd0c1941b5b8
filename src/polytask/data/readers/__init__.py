"""Reader family. Importing this package registers every member (one module each)."""

from polytask.data.readers.base import READERS, Reader
from polytask.registry import import_members

import_members(__name__, __path__, shared=("base", "common"))

__all__ = ["READERS", "Reader"]
