"""`polytask serve`: a real uvicorn on loopback answering a tiny two-task run (sentiment +
NER), the batcher on its own, request limits and their messages, and graceful shutdown."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

import polytask
from polytask.cli import app as cli_app
from polytask.config import parse_config
from polytask.data.example import Example
from polytask.errors import ConfigError, DataError, PolytaskError
from polytask.serving.server import (
    Limits,
    MicroBatcher,
    RequestError,
    bind_socket,
    check_address,
    create_app,
    require_serving,
    uvicorn_server,
)
from polytask.training.loop import train
from tests.unit.toy import toy_config, toy_texts, write_toy_jsonl, write_toy_ner

TEXTS = [t for t, _ in toy_texts(12, seed=7)] + ["Alice met Bob", "Carol and the film"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, tiny_encoder_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("serve")
    raw = toy_config(tiny_encoder_dir, write_toy_jsonl(root / "sent"), root / "run", epochs=1)
    ner = write_toy_ner(root / "ner")
    raw["tasks"].append({"name": "ner", "type": "token_classification",
                         "data": {"train": ner["train"], "dev": ner["dev"]}})
    train(parse_config(raw))
    return root / "run"


@pytest.fixture(scope="module")
def reference(run_dir: Path) -> Any:
    """A second Predictor, called only from the test thread, to compare the server against."""
    return polytask.load(str(run_dir), device="cpu")


class LiveServer:
    """uvicorn on a free loopback port, in a background thread."""

    def __init__(self, app: Any, graceful_timeout: float | None = None):
        self.app = app
        # IPPROTO_TCP: asyncio sets TCP_NODELAY only then (else ~40 ms per response, Nagle)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn_server(app, graceful_timeout=graceful_timeout, log_level="warning")
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.handle_exit(signal.SIGTERM, None)  # what uvicorn's signal handler calls
        self.thread.join(30)
        assert not self.thread.is_alive(), "server did not stop"

    def __exit__(self, *exc: object) -> None:
        if self.thread.is_alive():
            self.stop()


LIMITS = Limits(max_texts=16, max_chars=100, max_body_bytes=4096)


@pytest.fixture(scope="module")
def server(run_dir: Path) -> Any:
    with LiveServer(create_app(polytask.load(str(run_dir), device="cpu"), LIMITS)) as live:
        yield live


@pytest.fixture()
def client(server: LiveServer) -> Any:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def same(a: Any, b: Any) -> bool:
    """Equal predictions: labels and tags exactly, probabilities to 1e-5 (padding differs)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        return a == pytest.approx(b, abs=1e-5)
    return a == b


# ---- answers ---------------------------------------------------------------------------------
def test_single_and_batch_requests_equal_the_predictor(client: httpx.Client, reference: Any) -> None:
    expected = reference.predict(TEXTS)  # multi-task run: {task: prediction} per text
    assert set(expected[0]) == {"sent", "ner"}

    r = client.post("/predict", json={"texts": TEXTS})
    assert r.status_code == 200, r.text
    assert same(r.json()["predictions"], expected)

    r = client.post("/predict", json={"text": TEXTS[3]})
    assert r.status_code == 200 and same(r.json()["predictions"], [expected[3]])
    assert r.json()["predictions"][0]["ner"]["tags"] == expected[3]["ner"]["tags"]
    assert set(r.json()["predictions"][0]["sent"]["probs"]) == {"pos", "neg"}


def test_task_selection_and_token_inputs(client: httpx.Client, reference: Any) -> None:
    r = client.post("/predict", json={"texts": TEXTS[:4], "tasks": ["ner"]})
    assert r.status_code == 200, r.text
    assert same(r.json()["predictions"], reference.predict(TEXTS[:4], ["ner"]))
    assert all(list(p) == ["ner"] for p in r.json()["predictions"])

    # a task name as a string answers that task's dict directly, like Predictor.predict("x", "sent")
    r = client.post("/predict", json={"texts": TEXTS[:4], "tasks": "sent"})
    assert same(r.json()["predictions"], reference.predict(TEXTS[:4], "sent"))
    assert set(r.json()["predictions"][0]) == {"label", "probs"}

    # order of the named tasks is kept, a repeated name answered once
    r = client.post("/predict", json={"text": "Bob was happy", "tasks": ["ner", "sent", "ner"]})
    assert list(r.json()["predictions"][0]) == ["ner", "sent"]

    words = [["Alice", "liked", "the", "film"], ["Dave"]]
    r = client.post("/predict", json={"tokens": words, "tasks": ["ner"]})
    assert r.status_code == 200, r.text
    got = r.json()["predictions"]
    assert [len(p["ner"]["tags"]) for p in got] == [4, 1]  # a tag per word
    assert same(got, reference.predict(words, ["ner"]))

    # 'sent' was trained on single texts: pairs sent to it are refused, not silently read
    r = client.post("/predict", json={"texts": ["a good film", "sad"], "text_pairs": ["fun", "dull"],
                                      "tasks": "sent"})
    assert r.status_code == 422
    assert r.json()["detail"] == ("'text_pairs' was given, but task 'sent' was trained on single texts; leave "
                                  "'text_pairs' out (or name only pair tasks in 'tasks')")


def test_health_metadata_and_openapi(client: httpx.Client) -> None:
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["queued_texts"] == 0
    assert {"requests", "batches", "multi_request_batches", "largest_batch_texts"} <= set(health["stats"])

    meta = client.get("/metadata").json()
    assert meta["run"] == "toy" and meta["checkpoint"] in ("best", "last") and meta["step"] > 0
    tasks = {t["name"]: t for t in meta["tasks"]}
    assert tasks["sent"]["type"] == "classification" and sorted(tasks["sent"]["labels"]) == ["neg", "pos"]
    assert tasks["ner"]["type"] == "token_classification" and tasks["ner"]["token_level"]
    assert "B-PER" in tasks["ner"]["labels"]
    assert meta["encoder"]["type"] == "transformer"
    assert meta["versions"] is None  # no API key: library versions are shown to no one
    assert client.get("/openapi.json").json()["info"]["version"] == "1"  # the API's, not polytask's
    assert meta["limits"]["max_texts"] == 16 and meta["limits"]["max_chars"] == 100

    schema = client.get("/openapi.json").json()
    assert {"/predict", "/health", "/metadata"} <= set(schema["paths"])
    request = schema["components"]["schemas"]["PredictRequest"]
    assert {"texts", "text", "text_pairs", "tokens", "tasks"} <= set(request["properties"])
    assert "413" in schema["paths"]["/predict"]["post"]["responses"]


# ---- refusals -----------------------------------------------------------------------------------
BAD = [
    (b'{"texts": ["a",', 400, "the request body is not valid JSON"),
    ({"texts": []}, 422, "texts must not be empty"),
    ({"tokens": []}, 422, "tokens must not be empty"),
    ({"texts": ["x"] * 17}, 413, "too many inputs: 17 in one request and the limit is 16 (server option --max-texts)"),
    ({"texts": ["ok", "x" * 101]}, 413, "texts[1] has 101 characters and the limit is 100 (server option --max-chars)"),
    ({"text": "x" * 101}, 413, "text has 101 characters"),
    ({"text": "ok", "text_pair": "y" * 101}, 413, "text_pair has 101 characters"),
    ({"tokens": [["a"], ["w" * 60, "w" * 60]]}, 413, "tokens[1] has 121 characters"),
    ({"text": "a", "tasks": ["nope"]}, 404, "unknown task 'nope'; this run has: sent, ner"),
    ({"text": "a", "tasks": []}, 422, "tasks must not be empty; leave it out for every task (sent, ner)"),
    ({"texts": [1, 2]}, 422, "texts[0]: Input should be a valid string"),
    ({"text": "a", "tasks": 3}, 422, "tasks must be a task name or a list of task names"),
    ({"text": "a", "tasks": [3]}, 422, "tasks must be a task name or a list of task names"),
    ({"texts": "one string"}, 422, "texts: Input should be a valid list"),
    ({"tokens": ["not", "lists"]}, 422, "tokens[0]: Input should be a valid list"),
    ({}, 422, "the request needs 'texts' (a list of strings), 'text' (one string) or 'tokens'"),
    ({"texts": ["a"], "text": "b"}, 422, "give only one of 'texts', 'text' and 'tokens'; got texts, text"),
    ({"textz": ["a"]}, 422, "unknown key 'textz'; the keys are: texts, text, text_pairs"),
    ([1, 2], 422, "the request body must be a JSON object"),
    (b'{"text": "a"}', 422, "sent with content-type application/json"),
    ({"texts": ["fine", "  "]}, 422, "texts[1] is empty; every input needs some text"),
    ({"tokens": [["a"], []]}, 422, "tokens[1] is empty"),
    ({"texts": ["a", "b"], "text_pairs": ["c"]}, 422, "text_pairs has 1 items but texts has 2; give one pair per text"),
    ({"texts": ["a"], "text_pair": "b"}, 422, "'text_pair' goes with 'text'"),
    ({"text": "a", "text_pairs": ["b"]}, 422, "'text_pairs' goes with 'texts'"),
]


@pytest.mark.parametrize(("body", "status", "message"), BAD, ids=[m[:30] for _, _, m in BAD])
def test_bad_requests_get_a_4xx_with_a_message(client: httpx.Client, body: Any, status: int, message: str) -> None:
    if isinstance(body, bytes):
        json_type = body.startswith(b'{"texts"')  # the other raw body goes without a content type
        r = client.post("/predict", content=body, headers={"content-type": "application/json"} if json_type else {})
    else:
        r = client.post("/predict", json=body)
    assert r.status_code == status, r.text
    assert message in r.json()["detail"], r.json()
    assert client.get("/health").json()["status"] == "ok"  # the server is unharmed


# ---- concurrency and shutdown --------------------------------------------------------------
def test_200_concurrent_requests_are_batched_and_all_answered(
    server: LiveServer, client: httpx.Client, reference: Any
) -> None:
    expected = {t: p for t, p in zip(TEXTS, reference.predict(TEXTS), strict=True)}
    before = client.get("/health").json()["stats"]
    bodies = [{"texts": [TEXTS[(i + k) % len(TEXTS)] for k in range(1 + i % 3)]} for i in range(200)]

    async def fire() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as ac:
            return await asyncio.gather(*(ac.post("/predict", json=b) for b in bodies))

    started = time.monotonic()
    responses = asyncio.run(fire())
    elapsed = time.monotonic() - started
    assert elapsed < 60, f"200 requests took {elapsed:.1f} s"
    assert [r.status_code for r in responses] == [200] * 200
    for body, r in zip(bodies, responses, strict=True):
        assert same(r.json()["predictions"], [expected[t] for t in body["texts"]])

    after = client.get("/health").json()["stats"]
    assert after["requests"] - before["requests"] == 200
    assert after["completed"] - before["completed"] == 200
    assert after["texts"] - before["texts"] == sum(len(b["texts"]) for b in bodies)  # none lost
    assert after["multi_request_batches"] > before["multi_request_batches"]
    assert after["largest_batch_requests"] > 1
    assert after["batches"] - before["batches"] < 200  # fewer model calls than requests
    assert after["largest_batch_texts"] <= 64


class SlowPredictor:
    """A real Predictor whose model calls take at least 0.3 s, so requests pile up."""

    def __init__(self, inner: Any):
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def predict_examples(self, examples: list[Example], names: list[str]) -> list[dict[str, Any]]:
        time.sleep(0.3)
        return self.inner.predict_examples(examples, names)


def test_shutdown_answers_every_queued_request_first(run_dir: Path, reference: Any) -> None:
    app = create_app(SlowPredictor(polytask.load(str(run_dir), device="cpu")), Limits(max_batch_size=2))
    batcher = app.state.batcher
    results: dict[int, httpx.Response | Exception] = {}

    def ask(i: int, url: str) -> None:
        try:
            results[i] = httpx.post(f"{url}/predict", json={"text": TEXTS[i], "tasks": "sent"}, timeout=60)
        except Exception as exc:  # noqa: BLE001 - recorded and asserted below
            results[i] = exc

    live = LiveServer(app).__enter__()
    threads = [threading.Thread(target=ask, args=(i, live.url)) for i in range(8)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while batcher.stats.requests < 8:
        assert time.monotonic() < deadline, "requests never reached the queue"
        time.sleep(0.01)
    assert batcher.stats.completed < 8  # 4 batches of 2 at >= 0.3 s: most are still queued
    live.stop()  # SIGTERM's path: stop accepting, wait for open requests, drain, exit
    for t in threads:
        t.join(30)
    expected = reference.predict(TEXTS[:8], "sent")
    assert sorted(results) == list(range(8))
    for i in range(8):
        r = results[i]
        assert isinstance(r, httpx.Response) and r.status_code == 200, r
        assert same(r.json()["predictions"], [expected[i]])
    assert batcher.closing and batcher.queued_texts == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{live.url}/health", timeout=5)


def test_cli_serves_until_sigterm(run_dir: Path) -> None:
    """`polytask serve` in this process's main thread (where uvicorn installs its signal
    handlers); a helper thread asks a question, then sends the process SIGTERM."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    seen: dict[str, Any] = {"signals": []}

    def client_then_sigterm() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    seen["answer"] = httpx.post(f"{url}/predict", json={"text": "a lovely film", "tasks": "sent"},
                                                timeout=30)
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGTERM)

    # uvicorn re-raises the signal after shutting down (so a service manager sees how the
    # process ended); catch it here instead of letting it end pytest
    previous = signal.signal(signal.SIGTERM, lambda sig, frame: seen["signals"].append(sig))
    helper = threading.Thread(target=client_then_sigterm, daemon=True)
    try:
        helper.start()
        result = CliRunner().invoke(cli_app, ["serve", str(run_dir), "--port", str(port), "--threads", "1",
                                              "--max-texts", "5", "--log-level", "warning"])
        helper.join(30)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert result.exit_code == 0, result.output
    assert f"serving {run_dir} on http://127.0.0.1:{port}" in result.output
    assert seen["answer"].status_code == 200
    assert seen["answer"].json()["predictions"][0]["label"] in ("pos", "neg")
    assert seen["signals"] == [signal.SIGTERM]  # handled by uvicorn first, then passed on
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/health", timeout=5)


# ---- the batcher on its own --------------------------------------------------------------------
class FakePredictor:
    """Echoes inputs; tasks a and b are sequence-level, c token-level; records each call."""

    def __init__(self, delay: float = 0.0):
        self.tasks = {"a": SimpleNamespace(token_level=False), "b": SimpleNamespace(token_level=False),
                      "c": SimpleNamespace(token_level=True)}
        self.calls: list[tuple[list[Any], list[str]]] = []
        self.delay = delay

    def task_names(self, task: str | list[str] | None) -> list[str]:
        return list(self.tasks) if task is None else [task] if isinstance(task, str) else task

    def predict_examples(self, examples: list[Example], names: list[str]) -> list[dict[str, Any]]:
        time.sleep(self.delay)
        if any(e.text == "boom" for e in examples):
            raise ValueError("boom")
        if any(e.text == "bad" for e in examples):
            raise DataError("input 'bad' cannot be tokenised")
        self.calls.append(([e.text for e in examples], list(names)))
        return [{n: {"echo": e.text, "task": n} for n in names} for e in examples]


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_batcher_groups_requests_and_slices_each_its_tasks() -> None:
    fake = FakePredictor(delay=0.05)
    batcher = MicroBatcher(fake, Limits(max_batch_size=4, max_wait_ms=50))
    jobs = [(["x0"], ["a"], True), (["x1", "x2"], ["b", "a"], False), (["x3"], ["c"], False),
            (["x4"], ["a"], True), (["x5", "x6"], ["a"], True), (["x7"], ["c", "a"], False),
            (["x8", "x9"], ["a"], True)]

    async def main() -> list[Any]:
        await batcher.start()
        fake.calls.clear()  # drop the warm-up call
        out = await asyncio.gather(*(batcher.submit([Example(text=t) for t in texts], names, single)
                                     for texts, names, single in jobs))
        await batcher.close()
        return out

    out = _run(main())
    assert out[0] == [{"echo": "x0", "task": "a"}]
    assert out[1] == [{"b": {"echo": "x1", "task": "b"}, "a": {"echo": "x1", "task": "a"}},
                      {"b": {"echo": "x2", "task": "b"}, "a": {"echo": "x2", "task": "a"}}]
    assert list(out[1][0]) == ["b", "a"]
    assert out[2] == [{"c": {"echo": "x3", "task": "c"}}]
    assert out[4] == [{"echo": "x5", "task": "a"}, {"echo": "x6", "task": "a"}]
    assert out[5] == [{"c": {"echo": "x7", "task": "c"}, "a": {"echo": "x7", "task": "a"}}]
    assert out[6] == [{"echo": "x8", "task": "a"}, {"echo": "x9", "task": "a"}]
    # batches of at most 4 inputs in arrival order; x8-x9 would overflow the second, so they wait
    assert fake.calls == [
        (["x0", "x1", "x2"], ["a", "b"]),  # sequence tasks: the union, in the run's order
        (["x3"], ["c"]),  # the token task runs only on the input that asked for it
        (["x4", "x5", "x6", "x7"], ["a"]),
        (["x7"], ["c"]),
        (["x8", "x9"], ["a"]),
    ]
    assert batcher.stats.batches == 3 and batcher.stats.largest_batch_texts == 4
    assert batcher.stats.multi_request_batches == 2 and batcher.stats.texts == 10


def test_batcher_isolates_a_failing_request_and_bounds_its_queue() -> None:
    fake = FakePredictor(delay=0.05)
    batcher = MicroBatcher(fake, Limits(max_batch_size=8, max_wait_ms=50, max_queue=3))

    async def main() -> list[Any]:
        await batcher.start()
        subs = [batcher.submit([Example(text=t)], ["a"], True) for t in ("ok1", "boom", "ok2")]
        out = await asyncio.gather(*subs, return_exceptions=True)
        # the queue holds 3 inputs: while a 3-input request waits, a fourth is refused
        held = asyncio.ensure_future(batcher.submit([Example(text=t) for t in "xyz"], ["a"], False))
        await asyncio.sleep(0)
        with pytest.raises(RequestError, match=r"the server is busy: 3 inputs are queued and the limit is 3 \(server option --max-queue\)"):
            await batcher.submit([Example(text="w")], ["a"], True)
        await held
        await batcher.close()
        with pytest.raises(RequestError, match="the server is shutting down"):
            await batcher.submit([Example(text="late")], ["a"], True)
        return out

    out = _run(main())
    assert out[0] == [{"echo": "ok1", "task": "a"}] and out[2] == [{"echo": "ok2", "task": "a"}]
    assert isinstance(out[1], ValueError)
    assert batcher.stats.failed_batches == 2  # the shared batch, then the culprit alone
    assert batcher.queued_texts == 0


def test_model_failures_answer_only_the_culprit() -> None:
    from fastapi.testclient import TestClient

    with TestClient(create_app(FakePredictor(), Limits()), raise_server_exceptions=False) as c:
        r = c.post("/predict", json={"text": "bad"})
        assert r.status_code == 422 and r.json() == {"detail": "input 'bad' cannot be tokenised"}
        r = c.post("/predict", json={"text": "boom"})
        assert r.status_code == 500
        assert re.fullmatch(r"internal error \(error id [0-9a-f]{12}\); the server log has the details",
                            r.json()["detail"])  # nothing of the exception leaks
        assert "boom" not in r.text and "ValueError" not in r.text
        r = c.post("/predict", json={"text": "fine", "tasks": "a"})
        assert r.status_code == 200 and r.json() == {"predictions": [{"echo": "fine", "task": "a"}]}


# ---- configuration and install errors -------------------------------------------------------
def test_limits_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"max_batch_size \(--max-batch-size\) must be a whole number of at least 1; got 0"):
        Limits(max_batch_size=0)
    with pytest.raises(ConfigError, match=r"max_wait_ms \(--max-wait-ms\) must be 0 or more; got -1"):
        Limits(max_wait_ms=-1)


def test_cli_errors_exit_2_with_a_message(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli_app, ["serve", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "no such run directory" in result.output
    result = runner.invoke(cli_app, ["serve", str(tmp_path), "--max-texts", "0"])
    assert result.exit_code == 2 and "max_texts (--max-texts) must be a whole number of at least 1" in result.output
    result = runner.invoke(cli_app, ["serve", str(tmp_path)])
    assert result.exit_code == 2 and "no checkpoint found" in result.output


def test_missing_serve_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "fastapi", None)
    with pytest.raises(PolytaskError, match=r"serving needs FastAPI and uvicorn .*pip install 'polytask\[serve\]'"):
        require_serving()
    with pytest.raises(PolytaskError, match=r"pip install 'polytask\[serve\]'"):
        create_app(FakePredictor())
    result = CliRunner().invoke(cli_app, ["serve", "anywhere"])
    assert result.exit_code == 2 and "pip install 'polytask[serve]'" in result.output


# ---- hardening: body size, bad Unicode, JSON on every path, API key, addresses, shutdown --------
def _raw_request(port: int, head: bytes, body_parts: list[bytes], timeout: float = 10) -> tuple[int, dict, float]:
    """Send ``head`` and ``body_parts`` over a raw socket, stop sending at the first answer, and
    return (status, JSON body, seconds until the answer)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head)
        for part in body_parts:
            try:
                sock.sendall(part)
            except OSError:  # the server answered and closed: stop sending
                break
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < int(
                re.search(rb"content-length: (\d+)", data.lower()).group(1) if b"content-length" in data.lower() else 1):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    elapsed = time.monotonic() - started
    status = int(data.split(b" ", 2)[1])
    return status, json.loads(data.split(b"\r\n\r\n", 1)[1]), elapsed


def test_an_oversized_body_is_refused_before_it_is_read(server: LiveServer, client: httpx.Client) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    # A 200 MB Content-Length with only 16 bytes sent: the 413 comes at once, nothing is buffered.
    head = (b"POST /predict HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
            b"content-length: 200000000\r\n\r\n")
    status, body, elapsed = _raw_request(port, head, [b'{"texts": ["aaaa'])
    assert status == 413 and elapsed < 5
    assert body["detail"] == ("the request body is larger than the limit of 4096 bytes (server option "
                              "--max-body-bytes); send fewer or shorter inputs per request (got 200000000 bytes)")
    # A chunked body without a Content-Length is cut off once it passes the limit.
    head = (b"POST /predict HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
            b"transfer-encoding: chunked\r\n\r\n")
    chunk = b"400\r\n" + b"a" * 1024 + b"\r\n"
    status, body, _ = _raw_request(port, head, [chunk] * 8)
    assert status == 413 and body["detail"].startswith("the request body is larger than the limit of 4096 bytes")
    assert client.get("/health").json()["status"] == "ok"


@pytest.mark.parametrize(("body", "message"), [
    (b'{"texts": ["fine", "a\\ud800b"]}', "texts[1] is not valid Unicode: character 1 is a lone surrogate (U+D800)"),
    (b'{"text": "\\udfff"}', "text is not valid Unicode: character 0 is a lone surrogate (U+DFFF)"),
    (b'{"tokens": [["Alice"], ["met", "\\ud83d"]]}', "tokens[1][1] is not valid Unicode"),
    (b'{"texts": ["a"], "text_pairs": ["\\ud800"]}', "text_pairs[0] is not valid Unicode"),
])
def test_invalid_unicode_is_a_422_naming_the_item(client: httpx.Client, body: bytes, message: str) -> None:
    r = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith(message)
    assert "TypeError" not in r.text


def test_echoed_surrogates_and_bad_bytes_still_answer_json(client: httpx.Client) -> None:
    # an unknown task or key holding a lone surrogate is echoed back escaped, never a 500
    r = client.post("/predict", content=b'{"text": "a", "tasks": "x\\ud800"}', headers={"content-type": "application/json"})
    assert r.status_code == 404 and r.json()["detail"].startswith("unknown task 'x\\ud800'")
    r = client.post("/predict", content=b'{"t\\ud800": 1}', headers={"content-type": "application/json"})
    assert r.status_code == 422 and "unable to parse raw data as a unicode string" in r.json()["detail"]
    r = client.post("/predict", content=b'{"text": "caf\xe9"}', headers={"content-type": "application/json"})
    assert r.status_code in (400, 422) and isinstance(r.json()["detail"], str)
    r = client.get("/nope")
    assert r.status_code == 404 and r.json() == {"detail": "Not Found"}
    r = client.get("/predict")
    assert r.status_code == 405 and r.json() == {"detail": "Method Not Allowed"}


def test_api_key_guards_everything_but_health_and_docs(run_dir: Path) -> None:
    from fastapi.testclient import TestClient

    predictor = polytask.load(str(run_dir), device="cpu")
    with TestClient(create_app(predictor, Limits(), api_key="s3cret")) as c:
        for method, path in (("post", "/predict"), ("get", "/metadata")):
            for headers in ({}, {"authorization": "Bearer wrong"}, {"x-api-key": "s3cre"}, {"authorization": "s3cret"}):
                r = getattr(c, method)(path, headers=headers, **({"json": {"text": "a"}} if method == "post" else {}))
                assert r.status_code == 401, (path, headers)
                assert r.json() == {"detail": "missing or wrong API key; send it as 'Authorization: Bearer <key>' "
                                              "or 'X-API-Key: <key>'"}
                assert r.headers["www-authenticate"] == "Bearer"
        assert c.get("/health").status_code == 200 and c.get("/openapi.json").status_code == 200
        r = c.post("/predict", json={"text": "a lovely film", "tasks": "sent"}, headers={"authorization": "Bearer s3cret"})
        assert r.status_code == 200 and r.json()["predictions"][0]["label"] in ("pos", "neg")
        r = c.get("/metadata", headers={"x-api-key": "s3cret"})
        assert r.status_code == 200 and {"polytask", "torch", "transformers"} <= set(r.json()["versions"])
    with pytest.raises(ConfigError, match=r"the API key \(--api-key or POLYTASK_API_KEY\) is empty"):
        create_app(FakePredictor(), api_key="  ")


def test_the_key_can_come_from_the_environment(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from polytask.serving import server as server_mod

    seen: dict[str, Any] = {}
    monkeypatch.setattr(server_mod, "serve", lambda run, **kw: seen.update(kw))
    result = CliRunner().invoke(cli_app, ["serve", str(run_dir)], env={"POLYTASK_API_KEY": "from-env"})
    assert result.exit_code == 0, result.output
    assert seen["api_key"] == "from-env"
    result = CliRunner().invoke(cli_app, ["serve", str(run_dir), "--api-key", "given"])
    assert seen["api_key"] == "given"


def test_port_and_host_are_checked_with_one_line(run_dir: Path) -> None:
    runner = CliRunner()
    for args, message in (
        (["--port", "70000"], "port (--port) must be a whole number from 1 to 65535; got 70000"),
        (["--port", "0"], "port (--port) must be a whole number from 1 to 65535; got 0"),
        (["--host", "no-such-host.invalid"], "host (--host) 'no-such-host.invalid' is not an address this machine can listen on"),
        (["--graceful-timeout", "-1"], "--graceful-timeout must be 0 or more seconds; got -1.0"),
    ):
        result = runner.invoke(cli_app, ["serve", str(run_dir), *args])
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output and "Traceback" not in result.output
    with pytest.raises(ConfigError, match="port"):
        check_address("127.0.0.1", 70000)
    mine = bind_socket("127.0.0.1", 1024 + os.getpid() % 20000)
    # a TCP socket by its protocol too: asyncio then sets TCP_NODELAY on every connection, and
    # responses do not wait ~40 ms for a delayed ACK
    assert mine.proto == socket.IPPROTO_TCP
    mine.close()
    taken = socket.socket()  # a port in use
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=rf"cannot listen on 127.0.0.1:{port}: .*; pick another --port"):
            bind_socket("127.0.0.1", port)
    finally:
        taken.close()


def test_graceful_timeout_answers_everything_open_with_json_and_exits_by_it(run_dir: Path) -> None:
    """8 requests queued behind a model that takes 0.6 s per call; a 1.5 s graceful timeout can
    finish only some: the others get a JSON 503 (not uvicorn's plain-text 500) and the server
    is gone within the timeout plus one model call."""

    class Slower(SlowPredictor):
        def predict_examples(self, examples: list[Example], names: list[str]) -> list[dict[str, Any]]:
            time.sleep(0.6)
            return self.inner.predict_examples(examples, names)

    app = create_app(Slower(polytask.load(str(run_dir), device="cpu")), Limits(max_batch_size=1, max_wait_ms=0))
    batcher = app.state.batcher
    results: dict[int, httpx.Response | Exception] = {}

    def ask(i: int, url: str) -> None:
        try:
            results[i] = httpx.post(f"{url}/predict", json={"text": TEXTS[i], "tasks": "sent"}, timeout=30)
        except Exception as exc:  # noqa: BLE001 - recorded and asserted below
            results[i] = exc

    live = LiveServer(app, graceful_timeout=1.5).__enter__()
    threads = [threading.Thread(target=ask, args=(i, live.url)) for i in range(8)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while batcher.stats.requests < 8:
        assert time.monotonic() < deadline, "requests never reached the queue"
        time.sleep(0.01)
    started = time.monotonic()
    live.stop()
    took = time.monotonic() - started
    for t in threads:
        t.join(30)
    assert took < 1.5 + 0.6 + 0.5, f"shutdown took {took:.1f} s"
    statuses = sorted(r.status_code for r in results.values() if isinstance(r, httpx.Response))
    assert len(statuses) == 8, results  # every request answered
    assert 200 in statuses and 503 in statuses and set(statuses) <= {200, 503}
    for r in results.values():
        body = r.json()  # JSON, every one
        if r.status_code == 503:
            assert body["detail"].startswith("the server is shutting down and could not answer this request "
                                             "within its graceful timeout (server option --graceful-timeout)")
    assert batcher.expired


def test_health_says_draining_with_a_503_once_shutdown_begins() -> None:
    from fastapi.testclient import TestClient

    app = create_app(FakePredictor(), Limits())
    with TestClient(app) as c:
        assert c.get("/health").status_code == 200
        app.state.batcher.closing = True  # what begin_shutdown sets
        r = c.get("/health")
        assert r.status_code == 503 and r.json()["status"] == "draining"
        r = c.post("/predict", json={"text": "late", "tasks": "a"})
        assert r.status_code == 503 and r.json() == {"detail": "the server is shutting down; retry on another instance"}
        app.state.batcher.closing = False
