"""The old home of run loading; it lives in ``polytask.runs`` now (kept so old imports work)."""

from polytask.runs import LoadedRun, find_checkpoint, load_run, starting_encoder

__all__ = ["LoadedRun", "find_checkpoint", "load_run", "starting_encoder"]
