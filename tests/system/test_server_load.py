"""`polytask serve` under load, as a real process: 500 concurrent clients with mixed valid and
invalid requests (0 lost, 0 5xx, p95 printed), then SIGTERM in the middle of a second wave with a
graceful timeout (every request that reached the server answered with JSON, exit by the timeout).

Loopback only, bounded: each client sends at most ``PER_CLIENT`` requests and stops at
``WAVE_SECONDS``; run with ``pytest -m system tests/system/test_server_load.py -s`` to see the
figures.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from polytask.config import parse_config
from polytask.training.loop import train
from tests.unit.toy import toy_config, toy_texts, write_toy_jsonl

pytestmark = pytest.mark.system

CLIENTS = 500
PER_CLIENT = 12  # requests per client in the first wave (bounded)
WAVE_SECONDS = 45.0  # the first wave stops here even if unfinished
GRACEFUL = 3.0  # --graceful-timeout of the second wave
MAX_TEXTS = 8
MAX_BODY = 20_000
TEXTS = [t for t, _ in toy_texts(16, seed=5)]

# (name, body as JSON-able or raw bytes, expected status)
REQUESTS: list[tuple[str, Any, int]] = [
    ("texts", {"texts": TEXTS[:3]}, 200),
    ("text", {"text": TEXTS[4], "tasks": "sent"}, 200),
    ("bad json", b'{"texts": ["a",', 400),
    ("empty", {"texts": []}, 422),
    ("texts", {"texts": TEXTS[5:9]}, 200),
    ("unknown task", {"text": "a", "tasks": ["nope"]}, 404),
    ("surrogate", b'{"texts": ["ok", "x\\ud800"]}', 422),
    ("too many", {"texts": ["a"] * (MAX_TEXTS + 1)}, 413),
    ("text", {"text": TEXTS[10]}, 200),
    ("body too big", {"texts": ["x" * 5000] * 6}, 413),
    ("wrong type", {"texts": [1, 2]}, 422),
    ("texts", {"texts": TEXTS[11:13]}, 200),
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, tiny_encoder_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("load")
    train(parse_config(toy_config(tiny_encoder_dir, write_toy_jsonl(root / "sent"), root / "run", epochs=1)))
    return root / "run"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run_dir: Path, port: int, graceful: float | None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "polytask.cli", "serve", str(run_dir), "--port", str(port), "--threads", "1",
           "--max-texts", str(MAX_TEXTS), "--max-body-bytes", str(MAX_BODY), "--log-level", "warning",
           "--max-queue", "100000"]
    if graceful is not None:
        cmd += ["--graceful-timeout", str(graceful)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else "server died"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("the server did not start")


class Tally:
    """Every request's outcome."""

    def __init__(self) -> None:
        self.sent = 0
        self.statuses: Counter[int] = Counter()
        self.unexpected: list[str] = []
        self.not_json: list[str] = []
        self.lost: list[str] = []  # reached the server (or was on its way) and got no answer
        self.refused = 0  # not connected: the server had closed its socket
        self.latency: list[float] = []


def shared_client(url: str, keepalive: bool) -> httpx.AsyncClient:
    """One client for all: a pool of ``CLIENTS`` connections (a client object each would spend
    seconds building 500 TLS contexts before the first request)."""
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS if keepalive else 0)
    return httpx.AsyncClient(base_url=url, timeout=60, limits=limits, verify=False)


async def client(i: int, ac: httpx.AsyncClient, tally: Tally, stop_at: float,
                 sigterm_at: list[float], limit: int) -> None:
    """One of the concurrent clients: a bounded loop of mixed requests."""
    for k in range(limit):
        if time.monotonic() > stop_at:
            return
        name, body, expected = REQUESTS[(i + k) % len(REQUESTS)]
        started = time.monotonic()
        tally.sent += 1
        try:
            if isinstance(body, bytes):
                r = await ac.post("/predict", content=body, headers={"content-type": "application/json"})
            else:
                r = await ac.post("/predict", json=body)
        except httpx.ConnectError:
            tally.refused += 1
            return  # the server is gone: this client stops
        except httpx.TransportError as exc:
            after_sigterm = bool(sigterm_at) and started >= sigterm_at[0]
            if after_sigterm and isinstance(exc, (httpx.ReadError, httpx.RemoteProtocolError, httpx.WriteError)):
                tally.refused += 1  # connected to a closing server after SIGTERM: never in flight
                return
            when = f" (sent {started - sigterm_at[0]:+.2f} s from SIGTERM)" if sigterm_at else ""
            cause = exc.__cause__ or exc.__context__
            while cause is not None and (cause.__cause__ or cause.__context__) is not None:
                cause = cause.__cause__ or cause.__context__
            tally.lost.append(f"{name}: {type(exc).__name__}: {exc}{when} [{cause!r}]")
            return
        tally.latency.append(time.monotonic() - started)
        tally.statuses[r.status_code] += 1
        try:
            detail = r.json()
        except json.JSONDecodeError:
            tally.not_json.append(f"{name}: {r.status_code} {r.text[:80]!r}")
            continue
        ok = r.status_code == expected or (sigterm_at and r.status_code == 503)
        if not ok:
            tally.unexpected.append(f"{name}: {r.status_code} (expected {expected}): {detail}")
        if r.status_code == 503 and "shutting down" in str(detail):
            return  # as a real client would: go to another instance


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def test_500_concurrent_clients_lose_nothing(run_dir: Path) -> None:
    port = free_port()
    proc = start_server(run_dir, port, graceful=None)
    tally = Tally()
    try:
        async def wave() -> float:
            started = time.monotonic()
            stop_at = started + WAVE_SECONDS
            async with shared_client(f"http://127.0.0.1:{port}", keepalive=True) as ac:
                await asyncio.gather(*(client(i, ac, tally, stop_at, [], PER_CLIENT) for i in range(CLIENTS)))
            return time.monotonic() - started

        seconds = asyncio.run(wave())
        health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).json()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    answered = sum(tally.statuses.values())
    print(f"\nload: {CLIENTS} clients, {tally.sent} requests in {seconds:.1f} s ({answered / seconds:.0f}/s), "
          f"lost {len(tally.lost)}, 5xx {sum(v for s, v in tally.statuses.items() if s >= 500)}, "
          f"p50 {1000 * quantile(tally.latency, 0.5):.0f} ms, p95 {1000 * quantile(tally.latency, 0.95):.0f} ms, "
          f"statuses {dict(sorted(tally.statuses.items()))}, model calls {health['stats']['batches']}, "
          f"largest batch {health['stats']['largest_batch_texts']} texts")
    assert tally.lost == [] and tally.not_json == [] and tally.unexpected == []
    assert tally.refused == 0 and answered == tally.sent
    assert not [s for s in tally.statuses if s >= 500]
    assert tally.sent >= CLIENTS  # every client got at least one request through
    assert health["stats"]["multi_request_batches"] > 0


def test_sigterm_mid_load_answers_every_request_with_json(run_dir: Path) -> None:
    port = free_port()
    proc = start_server(run_dir, port, graceful=GRACEFUL)
    tally = Tally()
    sigterm_at: list[float] = []
    exited_after: list[float] = []

    async def wave() -> None:
        stop_at = time.monotonic() + 30

        async def terminate() -> None:
            await asyncio.sleep(3.0)  # mid-load
            sigterm_at.append(time.monotonic())
            proc.send_signal(signal.SIGTERM)
            while proc.poll() is None:
                await asyncio.sleep(0.05)
            exited_after.append(time.monotonic() - sigterm_at[0])

        async with shared_client(f"http://127.0.0.1:{port}", keepalive=False) as ac:
            await asyncio.gather(terminate(), *(client(i, ac, tally, stop_at, sigterm_at, 200) for i in range(CLIENTS)))

    try:
        asyncio.run(wave())
    finally:
        if proc.poll() is None:
            proc.kill()
        output = proc.stdout.read() if proc.stdout else ""
    answered = sum(tally.statuses.values())
    print(f"\nsigterm: {tally.sent} requests, {answered} answered ({dict(sorted(tally.statuses.items()))}), "
          f"{tally.refused} refused after the socket closed, lost {len(tally.lost)}, exit {proc.returncode} "
          f"{exited_after[0]:.2f} s after SIGTERM (graceful timeout {GRACEFUL} s)")
    assert tally.lost == [], tally.lost[:5]
    assert tally.not_json == [] and tally.unexpected == []
    assert not [s for s in tally.statuses if s >= 500 and s != 503]
    assert exited_after[0] < GRACEFUL + 2.0
    assert proc.returncode in (-signal.SIGTERM, 128 + signal.SIGTERM, 0), output
    assert "Traceback" not in output, output
