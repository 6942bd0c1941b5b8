"""Is the Hugging Face Hub reachable? One quick answer, so offline machines fail at once.

Without a network, ``huggingface_hub`` retries a download for tens of seconds before it gives
up. polytask asks first: offline mode (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``), then one
TCP connection to the Hub's host with a short timeout.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

TRUE_VALUES = {"1", "on", "yes", "true"}


def hub_endpoint() -> str:
    """The Hub's address (``HF_ENDPOINT``, default https://huggingface.co)."""
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def offline_reason(timeout: float = 3.0) -> str | None:
    """Why the Hub cannot be reached (a phrase for an error message), or None when it can."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in TRUE_VALUES:
            return f"{var}={os.environ[var]} is set (offline mode)"
    url = urlparse(hub_endpoint())
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        return f"no route to {host}:{port} ({exc})"
    return None
