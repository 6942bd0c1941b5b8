"""Training callbacks and live trackers (``train.report_to``); see ``polytask.callbacks.base``."""

from __future__ import annotations

from polytask.callbacks.base import (
    CALLBACKS,
    Callback,
    CallbackList,
    TrackingError,
    build_callbacks,
)

__all__ = ["CALLBACKS", "Callback", "CallbackList", "TrackingError", "build_callbacks"]
