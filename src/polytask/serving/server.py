"""HTTP serving of a trained run: a FastAPI app whose requests share model calls.

``create_app(predictor, limits)`` builds the app; ``serve(run_dir, ...)`` loads a run and runs it
under uvicorn (``polytask serve RUN``). FastAPI and uvicorn are the ``serve`` extra; they are
imported only when an app is built, so the core install works without them.

Micro-batching (dynamic batching, as in NVIDIA Triton and TorchServe): every request's inputs
go into one asyncio queue. A single worker task takes the oldest request, then keeps collecting
until it holds ``max_batch_size`` inputs or that request has waited ``max_wait_ms``, and runs one
model call in a dedicated thread, so the event loop keeps accepting and answering while the
model works. Requests that arrive during a model call wait in the queue and form the next batch,
so batches grow with the load by themselves.

Requests asking for different tasks share a batch: the worker runs the union of the requested
tasks over the batch's inputs and hands each request only the tasks it named. The encoder pass
is shared (heads are a small fraction of the cost); sequence-level and token-level tasks get
separate passes over only the inputs that asked for them, because their tokenisation differs.

Nothing lost, nothing let in: a small ASGI layer in front of FastAPI (``_Guard``) checks the
optional API key (constant-time), refuses a body over ``max_body_bytes`` while reading it (at
once from its Content-Length), and answers JSON on every path (a crash names an error id, never
the exception). Inputs holding lone surrogates are a 422 naming the item. At shutdown
(``uvicorn_server``) the server keeps accepting until open requests are answered and the
kernel's accept queue is empty, answering 503 to new ones, and with a graceful timeout answers
503 to whatever is still open just before it, so every client gets JSON and the process exits on
time.
"""

import asyncio
import concurrent.futures
import hmac
import json
import logging
import os
import platform
import select
import socket
import time
import uuid
from collections.abc import Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from polytask.data.example import Example
from polytask.errors import ConfigError, PolytaskError

logger = logging.getLogger("polytask.serving")

INSTALL_HINT = "pip install 'polytask[serve]'"
INPUT_KEYS = ("texts", "text", "tokens")
API_KEY_ENV = "POLYTASK_API_KEY"
# Paths answered without the API key: load balancers' health checks carry none, and the schema
# and docs page describe the API only (no run data, no versions).
OPEN_PATHS = frozenset({"/health", "/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc"})


def require_serving() -> None:
    """Fail with the install command when FastAPI or uvicorn is missing."""
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        missing = getattr(exc, "name", None) or "fastapi/uvicorn"
        raise PolytaskError(
            f"serving needs FastAPI and uvicorn (the 'serve' extra), and {missing} is not "
            f"installed: {INSTALL_HINT}"
        ) from None


# ---- limits ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Limits:
    """What one server accepts and how it batches.

    Args:
        max_batch_size: inputs per model call (a larger single request runs as one call; the
            predictor splits it into its own forward batches).
        max_wait_ms: how long the oldest queued request may wait for others to join its batch.
        max_texts: inputs per request; more is answered 413.
        max_chars: characters per input (a text, a pair text, or the words of a token list
            joined by spaces); more is answered 413.
        max_queue: inputs waiting in the queue; a request that would exceed it gets 503.
        max_body_bytes: bytes of one request body; more is answered 413 while the body is
            being read (at once when its Content-Length says so), before any parsing.
    """

    max_batch_size: int = 64
    max_wait_ms: float = 5.0
    max_texts: int = 256
    max_chars: int = 10_000
    max_queue: int = 4096
    max_body_bytes: int = 8 * 1024 * 1024

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_texts", "max_chars", "max_queue", "max_body_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(
                    f"{name} (--{name.replace('_', '-')}) must be a whole number of at least 1; got {value!r}"
                )
        if not isinstance(self.max_wait_ms, (int, float)) or self.max_wait_ms < 0:
            raise ConfigError(f"max_wait_ms (--max-wait-ms) must be 0 or more; got {self.max_wait_ms!r}")


# ---- request and response models (they document the OpenAPI schema) --------------------------
class PredictRequest(BaseModel):
    """One request: exactly one of ``texts``, ``text`` or ``tokens``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [
            {"texts": ["a lovely film", "dull and sad"]},
            {"text": "Alice met Bob", "tasks": ["ner"]},
            {"texts": ["a question"], "text_pairs": ["its answer"]},
            {"tokens": [["Alice", "met", "Bob"]]},
        ]},
    )

    texts: list[str] | None = Field(None, description="Inputs, answered in this order.")
    text: str | None = Field(None, description="One input (short for texts: [text]).")
    text_pairs: list[str] | None = Field(
        None, description="Second texts of sentence-pair tasks, one per entry of texts.")
    text_pair: str | None = Field(None, description="Second text for `text` (pair tasks).")
    tokens: list[list[str]] | None = Field(
        None, description="Word lists for token-classification tasks (a tag per word comes back).")
    tasks: list[str] | str | None = Field(
        None, description="Tasks to answer (default: every task of the run). A single name as a "
        "string returns that task's prediction without the task-name level, like Predictor.predict.")


class PredictResponse(BaseModel):
    """Predictions in input order, shaped like ``Predictor.predict``: a run with one task (or a
    ``tasks`` string) gives that task's dict per input, e.g. ``{"label": "pos", "probs": {..}}``;
    otherwise ``{task: prediction}`` per input."""

    predictions: list[dict[str, Any]]


class ErrorResponse(BaseModel):
    """Every error: a message that says what is wrong (and, for bad fields, the details)."""

    detail: str
    errors: list[dict[str, Any]] | None = None


class BatchStats(BaseModel):
    """Counters since start: how well requests were batched."""

    requests: int = 0  # accepted into the queue
    completed: int = 0  # answered (successfully or with an error)
    texts: int = 0
    batches: int = 0  # model calls
    multi_request_batches: int = 0  # model calls that served more than one request
    largest_batch_requests: int = 0
    largest_batch_texts: int = 0
    failed_batches: int = 0
    model_seconds: float = 0.0


class HealthResponse(BaseModel):
    status: str
    queued_texts: int
    stats: BatchStats


class TaskInfo(BaseModel):
    name: str
    type: str
    token_level: bool
    labels: list[str] | None


class MetadataResponse(BaseModel):
    run: str
    checkpoint: str | None
    step: int | None
    tasks: list[TaskInfo]
    encoder: dict[str, Any]
    device: str
    versions: dict[str, str] | None = Field(
        None, description="Library versions; only given when the server has an API key (then "
        "every /metadata call carries it).")
    limits: dict[str, Any]
    batching: str


class RequestError(Exception):
    """A request the server refuses: an HTTP status and a message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


# ---- micro-batching ----------------------------------------------------------------------------
@dataclass(eq=False)  # hashed by identity: open jobs are kept in a set
class _Job:
    examples: list[Example]
    names: list[str]
    single: bool  # answer the task's dict, not {task: dict} (Predictor.predict's shape)
    future: asyncio.Future
    enqueued: float = field(default_factory=time.monotonic)


class MicroBatcher:
    """Collects requests from an asyncio queue into model calls run one at a time in a thread.

    Args:
        predictor: a ``Predictor`` (uses ``tasks`` and ``predict_examples``).
        limits: batch size, wait and queue bounds.
    """

    def __init__(self, predictor: Any, limits: Limits):
        self.predictor = predictor
        self.limits = limits
        self.stats = BatchStats()
        self.queued_texts = 0
        self.closing = False
        self._queue: asyncio.Queue[_Job | None] | None = None
        self._arrived: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._carry: _Job | None = None
        self._open: set[_Job] = set()  # submitted and not yet answered
        self._deadline: asyncio.TimerHandle | None = None
        self.expired = False  # the graceful timeout ran out: open requests were answered 503

    async def start(self) -> None:
        """Start the worker (inside the running event loop) after one warm-up call."""
        self._queue = asyncio.Queue()
        self._arrived = asyncio.Event()
        # One thread: model calls never overlap, and torch keeps its own intra-op threads busy.
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="polytask-model")
        names = list(self.predictor.tasks)
        await asyncio.get_running_loop().run_in_executor(
            self._executor, self.predictor.predict_examples, [Example(text="warm up")], names)
        self._worker = asyncio.create_task(self._run(), name="polytask-batcher")

    @property
    def open_requests(self) -> int:
        """Requests submitted and not yet answered."""
        return len(self._open)

    def begin_shutdown(self, timeout: float | None = None) -> None:
        """Refuse new requests (503); with ``timeout`` seconds, answer 503 to every request still
        open when it runs out, so each client gets an answer before the server exits.

        Args:
            timeout: seconds queued and running requests get; None waits for all of them.
        """
        self.closing = True
        if timeout is not None and self._deadline is None and not self.expired:
            self._deadline = asyncio.get_running_loop().call_later(max(0.0, timeout), self._expire)

    def _expire(self) -> None:
        self.expired = True
        for job in list(self._open):
            if not job.future.done():
                job.future.set_exception(RequestError(
                    503, "the server is shutting down and could not answer this request within its "
                    "graceful timeout (server option --graceful-timeout); retry on another instance"))

    async def close(self) -> None:
        """Refuse new requests, answer every queued one (or, past the graceful timeout, drop
        them: they were answered 503), then stop the worker and its thread."""
        self.closing = True
        if self._deadline is not None:
            self._deadline.cancel()
        if self._queue is not None and self._worker is not None:
            if self.expired:
                self._worker.cancel()
                try:
                    await self._worker
                except asyncio.CancelledError:
                    pass
            else:
                self._queue.put_nowait(None)  # after every queued job: FIFO drains them first
                self._arrived.set()
                await self._worker
        if self._executor is not None:
            # Past the timeout a model call still running is not waited for here (the
            # interpreter joins its thread at exit: one batch at most).
            self._executor.shutdown(wait=not self.expired, cancel_futures=True)

    async def submit(self, examples: list[Example], names: list[str], single: bool) -> list[dict[str, Any]]:
        """Queue one request and wait for its predictions (one dict per example, in order)."""
        if self.closing or self._queue is None:
            raise RequestError(503, "the server is shutting down; retry on another instance")
        if self.queued_texts + len(examples) > self.limits.max_queue:
            raise RequestError(
                503, f"the server is busy: {self.queued_texts} inputs are queued and the limit is "
                f"{self.limits.max_queue} (server option --max-queue); retry shortly")
        job = _Job(examples, names, single, asyncio.get_running_loop().create_future())
        self.queued_texts += len(examples)
        self.stats.requests += 1
        self._open.add(job)
        self._queue.put_nowait(job)
        self._arrived.set()
        try:
            return await job.future
        finally:
            self._open.discard(job)
            self.stats.completed += 1

    async def _next_batch(self, first: _Job) -> tuple[list[_Job], bool]:
        """``first`` plus queued jobs up to the size limit or its deadline; True when the stop
        marker was reached."""
        batch, size = [first], len(first.examples)
        deadline = first.enqueued + self.limits.max_wait_ms / 1000
        while size < self.limits.max_batch_size:
            if self._queue.empty():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._arrived.clear()
                try:  # waiting on an Event (not Queue.get) loses no item when the wait times out
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                except asyncio.TimeoutError:
                    break
                continue
            job = self._queue.get_nowait()
            if job is None:
                return batch, True
            if size + len(job.examples) > self.limits.max_batch_size:
                self._carry = job  # first in the next batch, so order is kept
                break
            batch.append(job)
            size += len(job.examples)
        return batch, False

    async def _run(self) -> None:
        stop = False
        while not stop:
            if self._carry is not None:
                first, self._carry = self._carry, None
            else:
                first = await self._queue.get()
                if first is None:
                    break
            batch, stop = await self._next_batch(first)
            await self._answer(batch)

    async def _answer(self, batch: list[_Job]) -> None:
        size = sum(len(j.examples) for j in batch)
        self.queued_texts -= size
        live = [j for j in batch if not j.future.done()]  # answered already (timeout, client gone)
        if len(live) < len(batch):
            if not live:
                return
            self.queued_texts += size
            await self._answer(live)
            return
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self._executor, self._predict, batch)
        except Exception as exc:  # noqa: BLE001 - one bad request must not fail its batch mates
            self.stats.failed_batches += 1
            if len(batch) > 1:
                self.queued_texts += size
                for job in batch:  # retry alone, so only the culprit gets the error
                    await self._answer([job])
                return
            if not batch[0].future.done():
                batch[0].future.set_exception(exc)
            return
        self.stats.model_seconds += time.perf_counter() - started
        self.stats.batches += 1
        self.stats.texts += size
        self.stats.multi_request_batches += int(len(batch) > 1)
        self.stats.largest_batch_requests = max(self.stats.largest_batch_requests, len(batch))
        self.stats.largest_batch_texts = max(self.stats.largest_batch_texts, size)
        for job, rows in zip(batch, results, strict=True):
            if not job.future.done():  # a cancelled request (client gone) is skipped
                job.future.set_result(rows)

    def _predict(self, batch: list[_Job]) -> list[list[dict[str, Any]]]:
        """One model call per input kind (sequence, token) over the union of requested tasks."""
        tasks = self.predictor.tasks
        rows = [[{} for _ in job.examples] for job in batch]
        for token_level in (False, True):
            wanted = {n for job in batch for n in job.names if tasks[n].token_level == token_level}
            if not wanted:
                continue
            names = [n for n in tasks if n in wanted]  # run order, so calls are reproducible
            jobs = [i for i, job in enumerate(batch) if any(n in wanted for n in job.names)]
            examples = [ex for i in jobs for ex in batch[i].examples]
            preds = self.predictor.predict_examples(examples, names)  # one {task: pred} per example
            offset = 0
            for i in jobs:
                for k in range(len(batch[i].examples)):
                    for n in batch[i].names:
                        if n in wanted:
                            rows[i][k][n] = preds[offset + k][n]
                offset += len(batch[i].examples)
        out = []
        for job, job_rows in zip(batch, rows, strict=True):
            if job.single:
                out.append([r[job.names[0]] for r in job_rows])
            else:  # keys in the order the request named them
                out.append([{n: r[n] for n in job.names} for r in job_rows])
        return out


# ---- request checks ----------------------------------------------------------------------------
def build_examples(req: PredictRequest, limits: Limits) -> list[Example]:
    """The request's inputs as Examples, or a RequestError naming the offending field and index."""
    given = [k for k in INPUT_KEYS if getattr(req, k) is not None]
    if not given:
        raise RequestError(
            422, "the request needs 'texts' (a list of strings), 'text' (one string) or "
            "'tokens' (a list of word lists)")
    if len(given) > 1:
        raise RequestError(422, f"give only one of 'texts', 'text' and 'tokens'; got {', '.join(given)}")
    key = given[0]
    if req.text_pair is not None and key != "text":
        raise RequestError(422, "'text_pair' goes with 'text'; with 'texts' use 'text_pairs' (a list)")
    if req.text_pairs is not None and key != "texts":
        raise RequestError(422, "'text_pairs' goes with 'texts'; with 'text' use 'text_pair'")
    items: list[Any] = [req.text] if key == "text" else list(getattr(req, key))
    pairs: list[str] | None = [req.text_pair] if req.text_pair is not None else req.text_pairs
    if not items:
        raise RequestError(422, f"{key} must not be empty; send at least one input")
    if len(items) > limits.max_texts:
        raise RequestError(
            413, f"too many inputs: {len(items)} in one request and the limit is {limits.max_texts} "
            "(server option --max-texts); split the request")
    if pairs is not None and len(pairs) != len(items):
        raise RequestError(422, f"text_pairs has {len(pairs)} items but texts has {len(items)}; give one pair per text")

    def where(name: str, i: int) -> str:
        return name if key == "text" else f"{name}[{i}]"

    examples = []
    for i, item in enumerate(items):
        if key == "tokens":
            for j, word in enumerate(item):
                _check_unicode(word, f"{where(key, i)}[{j}]")
        else:
            _check_unicode(item, where(key, i))
        if pairs is not None:
            _check_unicode(pairs[i], where("text_pair" if key == "text" else "text_pairs", i))
        size = len(item) if key != "tokens" else sum(len(w) for w in item) + len(item) - 1
        if (not item.strip()) if key != "tokens" else not item:
            raise RequestError(422, f"{where(key, i)} is empty; every input needs some text")
        if size > limits.max_chars:
            raise RequestError(
                413, f"{where(key, i)} has {size} characters and the limit is {limits.max_chars} "
                "(server option --max-chars); shorten or split it")
        pair = pairs[i] if pairs is not None else None
        if pair is not None and len(pair) > limits.max_chars:
            pair_key = "text_pair" if key == "text" else "text_pairs"
            raise RequestError(
                413, f"{where(pair_key, i)} has {len(pair)} characters and the limit is "
                f"{limits.max_chars} (server option --max-chars); shorten or split it")
        examples.append(Example(text=list(item) if key == "tokens" else item, text_pair=pair))
    return examples


def _check_unicode(value: str, name: str) -> None:
    """A 422 naming the input when it holds a lone surrogate (JSON lets ``"\\ud800"`` through;
    no tokenizer can take it, and it cannot be written back as UTF-8)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise RequestError(
            422, f"{name} is not valid Unicode: character {exc.start} is a lone surrogate "
            f"(U+{ord(value[exc.start]):04X}); send real characters (a \\ud83d-style escape must "
            "be followed by its low half, as in \\ud83d\\ude00)") from None


def _task_selection(predictor: Any, tasks: list[str] | str | None) -> tuple[list[str], bool]:
    if isinstance(tasks, list):
        if not tasks:
            raise RequestError(422, f"tasks must not be empty; leave it out for every task ({', '.join(predictor.tasks)})")
        tasks = list(dict.fromkeys(tasks))  # a repeated name is answered once
    try:
        names = predictor.task_names(tasks)
    except PolytaskError as exc:
        raise RequestError(404, str(exc)) from None
    return names, isinstance(tasks, str) or (tasks is None and len(names) == 1)


def _check_pairs_fit(predictor: Any, names: list[str], req: PredictRequest) -> None:
    """A 422 when pairs are sent to a task trained on single texts (it would read them silently)."""
    if req.text_pairs is None and req.text_pair is None:
        return
    key = "text_pair" if req.text_pair is not None else "text_pairs"
    for name in names:
        task = predictor.tasks[name]
        if not task.token_level and getattr(task, "pairs", None) is False:
            raise RequestError(
                422, f"'{key}' was given, but task {name!r} was trained on single texts; leave "
                f"'{key}' out (or name only pair tasks in 'tasks')")


def _field_name(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def _validation_error(errors: Sequence[dict[str, Any]]) -> tuple[int, str]:
    """Status and message for FastAPI's validation errors (malformed JSON is a 400)."""
    for err in errors:
        if err.get("type") == "json_invalid":
            reason = (err.get("ctx") or {}).get("error", "cannot be parsed")
            return 400, f"the request body is not valid JSON: {reason}"
    messages = []
    for err in errors:
        name = _field_name(err.get("loc", ()))
        if name.startswith("tasks"):  # a union: pydantic reports each member; one line says it
            messages.append("tasks must be a task name or a list of task names")
        elif err.get("type") == "extra_forbidden":
            allowed = ", ".join(PredictRequest.model_fields)
            messages.append(f"unknown key '{name}'; the keys are: {allowed}")
        elif name == "body" and err.get("type") in ("model_attributes_type", "model_type", "dict_type", "missing"):
            messages.append('the request body must be a JSON object such as {"texts": ["some text"]}, '
                            "sent with content-type application/json")
        else:
            messages.append(f"{name}: {err.get('msg')}")
    return 422, "; ".join(dict.fromkeys(messages))


# ---- the app ----------------------------------------------------------------------------------
def _versions() -> dict[str, str]:
    import torch
    import transformers

    import polytask

    out = {"polytask": polytask.__version__, "torch": torch.__version__,
           "transformers": transformers.__version__, "python": platform.python_version()}
    try:
        import fastapi

        out["fastapi"] = fastapi.__version__
    except ImportError:  # pragma: no cover - create_app needs it
        pass
    return out


def _metadata(predictor: Any, limits: Limits, versions: bool) -> MetadataResponse:
    run = getattr(predictor, "run", None)
    cfg = getattr(run, "config", None)
    meta = getattr(run, "meta", None) or {}
    cdir = getattr(run, "checkpoint_dir", None)
    tasks = [
        TaskInfo(name=n, type=getattr(t, "registry_name", type(t).__name__), token_level=bool(t.token_level),
                 labels=list(t.labels) if t.labels is not None else None)
        for n, t in predictor.tasks.items()
    ]
    encoder: dict[str, Any] = {}
    if cfg is not None:
        encoder = {"type": cfg.encoder.type, "name_or_path": cfg.encoder.name_or_path,
                   "pooling": cfg.encoder.pooling}
    return MetadataResponse(
        run=cfg.name if cfg is not None else "unknown",
        checkpoint=Path(cdir).name if cdir is not None else None,
        step=meta.get("step"),
        tasks=tasks,
        encoder=encoder,
        device=str(getattr(predictor, "device", "cpu")),
        versions=_versions() if versions else None,
        limits=asdict(limits),
        batching="union of requested tasks per batch; sequence and token tasks in separate passes",
    )


def json_body(content: Any) -> bytes:
    """JSON bytes that never fail: a lone surrogate echoed from a request (an unknown task name,
    a bad key) is written as its ``\\uXXXX`` escape, which is valid JSON, instead of raising."""
    text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.encode("utf-8", "backslashreplace")


async def _send_json(send: Any, status: int, content: Any, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    body = json_body(content)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


class _Guard:
    """The ASGI layer in front of the FastAPI app: the API key, the body-size limit (enforced
    while the body is read, before any parsing) and a JSON answer on every path that could
    otherwise end in a plain-text 500 (a crash, a request cancelled at shutdown).

    Args:
        app: the FastAPI app.
        limits: ``max_body_bytes`` is read.
        api_key: the key every request outside ``OPEN_PATHS`` must carry, or None.
    """

    def __init__(self, app: Any, limits: Limits, api_key: str | None):
        self.app = app
        self.limits = limits
        self.key = api_key.encode("utf-8") if api_key else None
        # What the app's own routes see (tests and users reach its state through the guard).
        self.state = app.state
        self.router = app.router

    def _authorised(self, headers: list[tuple[bytes, bytes]]) -> bool:
        given = b""
        for name, value in headers:
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                given = value[7:].strip()
            elif name == b"x-api-key":
                given = value.strip()
        # Constant-time: a timing difference must not tell how much of a guessed key is right.
        return hmac.compare_digest(given, self.key or b"")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            if self.key is not None and scope.get("path") not in OPEN_PATHS and not self._authorised(scope["headers"]):
                await _send_json(send, 401, {"detail": "missing or wrong API key; send it as 'Authorization: "
                                             "Bearer <key>' or 'X-API-Key: <key>'"},
                                 [(b"www-authenticate", b"Bearer")])
                return
            replay = await self._read_body(scope, receive, send)
            if replay is None:
                return  # answered (413, 400)
            await self.app(scope, replay, tracked)
        except asyncio.CancelledError:
            # uvicorn cancels requests still open when its graceful timeout runs out; answer
            # them (JSON 503) instead of letting uvicorn send a plain-text 500.
            if not started:
                try:
                    await _send_json(send, 503, {"detail": "the server is shutting down; retry on another instance"})
                except Exception:  # noqa: BLE001 - the connection may be gone already
                    pass
        except Exception:  # noqa: BLE001 - every error path answers JSON
            if not started:  # the app's handler answered (and logged) those that reached it
                ref = uuid.uuid4().hex[:12]
                logger.exception("request failed (error id %s)", ref)
                await _send_json(send, 500, {"detail": f"internal error (error id {ref}); the server log has the details"})

    async def _read_body(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        """The whole body, read up to the limit, as a ``receive`` for the app; None when the
        request was answered instead."""
        limit = self.limits.max_body_bytes
        too_big = ("the request body is larger than the limit of {limit} bytes (server option "
                   "--max-body-bytes); send fewer or shorter inputs per request")
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _send_json(send, 400, {"detail": "the Content-Length header is not a number"})
                    return None
                if declared > limit:  # refused before a byte of the body is read
                    await _send_json(send, 413, {"detail": too_big.format(limit=limit) + f" (got {declared} bytes)"})
                    return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:  # a chunked body (no Content-Length) is cut off here
                await _send_json(send, 413, {"detail": too_big.format(limit=limit)})
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay


def create_app(predictor: Any, limits: Limits | None = None, api_key: str | None = None) -> Any:
    """The ASGI app serving ``predictor`` (FastAPI behind a small guard layer).

    Endpoints: ``POST /predict``, ``GET /health`` (with batching counters), ``GET /metadata``,
    and FastAPI's ``/openapi.json`` and ``/docs``. Every error answers ``{"detail": message}``.
    The app's ``state.batcher`` is the micro-batcher; ``state.fastapi`` the FastAPI app.

    Args:
        predictor: a loaded ``Predictor`` (``polytask.load(run)``).
        limits: request and batching limits (defaults: ``Limits()``).
        api_key: when given, every request except ``/health``, ``/docs`` and ``/openapi.json``
            must carry it (``Authorization: Bearer <key>`` or ``X-API-Key``), else 401; and
            ``/metadata`` then lists library versions, which it never shows without a key.
    """
    require_serving()
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    class SafeJSONResponse(JSONResponse):
        def render(self, content: Any) -> bytes:
            return json_body(content)

    if api_key is not None and not api_key.strip():
        raise ConfigError(f"the API key (--api-key or {API_KEY_ENV}) is empty; give a key or leave it unset")
    limits = limits or Limits()
    batcher = MicroBatcher(predictor, limits)

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202
        await batcher.start()
        try:
            yield
        finally:  # uvicorn has stopped accepting and let open requests finish; drain the rest
            await batcher.close()

    cfg = getattr(getattr(predictor, "run", None), "config", None)
    app = FastAPI(
        title=f"polytask: {cfg.name}" if cfg is not None else "polytask",
        description="Predictions of a trained polytask run. Inputs are batched across clients.",
        version="1",  # the API's version; library versions are not shown to anyone without the key
        lifespan=lifespan,
        default_response_class=SafeJSONResponse,
    )
    app.state.batcher = batcher
    app.state.limits = limits
    app.state.fastapi = app
    errors = {code: {"model": ErrorResponse} for code in (400, 401, 404, 413, 422, 503)}

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, exc: RequestError) -> JSONResponse:
        return SafeJSONResponse({"detail": exc.message}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        status, message = _validation_error(exc.errors())
        details = [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in exc.errors()]
        return SafeJSONResponse({"detail": message, "errors": details}, status_code=status)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        # The message names no exception: its text may hold paths, inputs or internals.
        ref = uuid.uuid4().hex[:12]
        logger.error("prediction failed (error id %s)", ref, exc_info=exc)
        return SafeJSONResponse({"detail": f"internal error (error id {ref}); the server log has the details"},
                                status_code=500)

    @app.post("/predict", response_model=PredictResponse, responses=errors)
    async def predict(body: PredictRequest) -> PredictResponse:
        """Predict every task of the run (or the named ones) for each input, in input order."""
        examples = build_examples(body, limits)
        names, single = _task_selection(predictor, body.tasks)
        _check_pairs_fit(predictor, names, body)
        try:
            rows = await batcher.submit(examples, names, single)
        except PolytaskError as exc:  # e.g. an input the task's tokenisation refuses
            raise RequestError(422, str(exc)) from None
        return PredictResponse(predictions=rows)

    @app.get("/health", response_model=HealthResponse, responses={503: {"model": HealthResponse}})
    async def health() -> Any:
        """Liveness plus batching counters (``multi_request_batches`` > 0 means batching works);
        503 with status ``draining`` once shutdown has begun, so load balancers stop routing here."""
        body = HealthResponse(status="draining" if batcher.closing else "ok", queued_texts=batcher.queued_texts,
                              stats=batcher.stats)
        if batcher.closing:
            return SafeJSONResponse(body.model_dump(), status_code=503)
        return body

    @app.get("/metadata", response_model=MetadataResponse, responses={401: {"model": ErrorResponse}})
    async def metadata() -> MetadataResponse:
        """The run, its tasks and labels, the encoder and the server limits (and, on a server
        with an API key, library versions)."""
        return _metadata(predictor, limits, versions=api_key is not None)

    return _Guard(app, limits, api_key)


def check_address(host: str, port: int) -> None:
    """A ConfigError naming the option when ``port`` is out of range or ``host`` unknown."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ConfigError(f"port (--port) must be a whole number from 1 to 65535; got {port!r}")
    if not isinstance(host, str) or not host.strip():
        raise ConfigError(f"host (--host) must be an address such as 127.0.0.1 or 0.0.0.0; got {host!r}")
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(
            f"host (--host) {host!r} is not an address this machine can listen on ({reason}); "
            "use 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)"
        ) from None


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening-ready socket on ``host:port``, or a ConfigError saying why not (in use,
    not allowed, no such address)."""
    check_address(host, port)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP, not the default 0: asyncio sets TCP_NODELAY only on sockets that say
    # they are TCP, and without it every response waits ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        hint = "pick another --port" if exc.errno in (98, 48) else (
            "ports below 1024 need administrator rights; pick another --port" if exc.errno == 13 and port < 1024
            else "check --host and --port")
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; {hint}") from None
    sock.set_inheritable(True)
    return sock


def uvicorn_server(app: Any, graceful_timeout: float | None = None, log_level: str = "info", **config: Any) -> Any:
    """A ``uvicorn.Server`` for ``create_app``'s app whose shutdown keeps every request answered.

    On SIGTERM or Ctrl-C it stops accepting connections and refuses new requests (503). With
    ``graceful_timeout`` seconds, requests still open shortly before it runs out are answered
    503 (JSON), so uvicorn never has to cancel one, and the server exits by the timeout (plus
    at most the model call in progress, which cannot be interrupted). Without it, every open
    and queued request is answered first.

    Args:
        app: from ``create_app``.
        graceful_timeout: seconds, or None for no limit.
        log_level: uvicorn's log level.
        config: more ``uvicorn.Config`` arguments (``host``, ``port``...).
    """
    import uvicorn

    if graceful_timeout is not None and (not isinstance(graceful_timeout, (int, float)) or graceful_timeout < 0):
        raise ConfigError(f"graceful_timeout (--graceful-timeout) must be 0 or more seconds; got {graceful_timeout!r}")
    batcher: MicroBatcher = app.state.batcher

    class GracefulServer(uvicorn.Server):
        async def shutdown(self, sockets: Any = None) -> None:
            started = time.monotonic()
            # Our deadline comes a little before uvicorn's, so the 503s are written before it
            # would cancel anything; uvicorn's own timeout stays as the backstop.
            margin = 0.0 if graceful_timeout is None else min(0.5, graceful_timeout / 4)
            batcher.begin_shutdown(None if graceful_timeout is None else graceful_timeout - margin)
            # Keep listening while the open requests finish: a connection that arrives now, or
            # waits in the kernel's accept queue, is answered (503 JSON, "shutting down") instead
            # of being reset when the socket closes. /health says "draining" (503) meanwhile, so
            # a load balancer stops sending new clients.
            limit = None if graceful_timeout is None else started + graceful_timeout - margin
            while (batcher.open_requests or self._pending_accepts()) and not self.force_exit and (
                    limit is None or time.monotonic() < limit):
                await asyncio.sleep(0.02)
            for server in self.servers:  # stop accepting (uvicorn does it again, harmlessly)
                server.close()
            # uvicorn's shutdown closes every connection that has not started a request as idle.
            # Under load the event loop lags behind its sockets: a connection accepted a moment
            # ago may hold a request the client has sent and the server not yet read. Give such
            # connections a moment to start it, so they are answered instead of dropped.
            settle = 1.0 if graceful_timeout is None else max(0.0, min(1.0, started + graceful_timeout - margin - time.monotonic()))
            deadline = time.monotonic() + settle
            while time.monotonic() < deadline and any(
                    getattr(c, "cycle", True) is None for c in list(self.server_state.connections)):
                await asyncio.sleep(0.02)
            if graceful_timeout is not None:  # what is left of it, not a second full timeout
                self.config.timeout_graceful_shutdown = max(0.1, graceful_timeout - (time.monotonic() - started))
            await super().shutdown(sockets)

        def _pending_accepts(self) -> bool:
            """Whether a listening socket has connections the kernel accepted and we have not:
            closing it now would reset them, requests sent and all."""
            socks = [sock for server in self.servers for sock in (server.sockets or ())]
            try:
                return bool(socks) and bool(select.select(socks, [], [], 0)[0])
            except (OSError, ValueError):  # a socket already closed
                return False

    cfg = uvicorn.Config(app, log_level=log_level, timeout_graceful_shutdown=graceful_timeout, lifespan="on", **config)
    return GracefulServer(cfg)


def serve(
    run_dir: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    checkpoint: str = "best",
    limits: Limits | None = None,
    device: str | None = None,
    threads: int | None = None,
    graceful_timeout: float | None = None,
    log_level: str = "info",
    api_key: str | None = None,
    on_ready: Any = None,
    precision: str = "auto",
) -> None:
    """Load a run and serve it until SIGTERM or Ctrl-C (then answer open requests and exit).

    Args:
        run_dir: a run directory or checkpoint folder.
        host: the address to listen on (``0.0.0.0`` for every interface).
        port: the TCP port (1-65535).
        checkpoint: ``best`` (falls back to ``last``) or ``last``.
        limits: request and batching limits.
        device: ``cpu``, ``cuda``...; the GPU when one is present otherwise.
        threads: torch intra-op CPU threads (default: torch's choice).
        graceful_timeout: seconds open requests get at shutdown; those it cannot finish are
            answered 503 (default: no limit).
        log_level: uvicorn's log level.
        api_key: require this key on every request but ``/health`` and the docs (default: the
            ``POLYTASK_API_KEY`` environment variable; unset or empty there: no key).
        on_ready: called with no argument once the address is bound and the run loaded.
        precision: ``auto`` (bf16 autocast where the device computes bf16 natively), ``no``
            (fp32), ``bf16`` or ``fp16`` (``polytask.load``'s).
    """
    require_serving()
    import torch

    import polytask

    if threads is not None:
        if threads < 1:
            raise ConfigError(f"threads (--threads) must be at least 1; got {threads}")
        torch.set_num_threads(threads)
    if api_key is None:
        api_key = os.environ.get(API_KEY_ENV) or None
    limits = limits or Limits()
    check_address(host, port)
    predictor = polytask.load(str(run_dir), checkpoint=checkpoint, device=device, precision=precision)
    app = create_app(predictor, limits, api_key=api_key)
    sock = bind_socket(host, port)  # ours, so a taken port is one clear line, not uvicorn's log
    try:
        server = uvicorn_server(app, graceful_timeout=graceful_timeout, log_level=log_level, host=host, port=port)
        if on_ready is not None:
            on_ready()
        server.run(sockets=[sock])
    finally:
        sock.close()
