"""``polytask serve RUN``: answer predictions over HTTP (needs the ``serve`` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from polytask.commands._common import console, fail
from polytask.errors import PolytaskError


def register(app: typer.Typer) -> None:
    """Add the ``serve`` command to ``app``."""

    @app.command()
    def serve(
        run: Annotated[Path, typer.Argument(help="A run directory (or a checkpoint folder).")],
        host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0: every interface).")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
        checkpoint: Annotated[str, typer.Option(help="best (falls back to last) or last.")] = "best",
        max_batch_size: Annotated[int, typer.Option(help="Inputs per model call, across requests.")] = 64,
        max_wait_ms: Annotated[float, typer.Option(help="How long a request may wait for others to join its batch.")] = 5.0,
        max_texts: Annotated[int, typer.Option(help="Inputs per request (more: 413).")] = 256,
        max_chars: Annotated[int, typer.Option(help="Characters per input (more: 413).")] = 10_000,
        max_queue: Annotated[int, typer.Option(help="Inputs waiting in the queue (more: 503).")] = 4096,
        max_body_bytes: Annotated[int, typer.Option(help="Bytes of one request body, refused while it is read (more: 413).")] = 8 * 1024 * 1024,
        api_key: Annotated[str | None, typer.Option(envvar="POLYTASK_API_KEY", show_envvar=True, help="Require this key (Authorization: Bearer KEY, or X-API-Key) on every request but /health and the docs.")] = None,  # noqa: UP007
        device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1... (default: the GPU when present).")] = None,  # noqa: UP007
        threads: Annotated[int | None, typer.Option(help="Torch CPU threads for the model (default: torch's choice).")] = None,  # noqa: UP007
        graceful_timeout: Annotated[float | None, typer.Option(help="Seconds open requests get at shutdown; the rest are answered 503 (default: no limit).")] = None,  # noqa: UP007
        log_level: Annotated[str, typer.Option(help="uvicorn log level: critical, error, warning, info, debug.")] = "info",
        precision: Annotated[str, typer.Option(help="auto (bf16 autocast on a CPU with AMX/AVX512-BF16 or a bf16 GPU, fp32 elsewhere), no (fp32), bf16, fp16.")] = "auto",
    ) -> None:
        """Serve a trained run over HTTP: POST /predict, GET /health, GET /metadata, /docs."""
        from polytask.serving import server

        try:
            server.require_serving()
            limits = server.Limits(max_batch_size=max_batch_size, max_wait_ms=max_wait_ms, max_texts=max_texts,
                                   max_chars=max_chars, max_queue=max_queue, max_body_bytes=max_body_bytes)
            server.check_address(host, port)
            if graceful_timeout is not None and graceful_timeout < 0:
                raise PolytaskError(f"--graceful-timeout must be 0 or more seconds; got {graceful_timeout}")
            if not run.exists():
                raise PolytaskError(f"{run}: no such run directory; pass the folder `polytask train` wrote")
            key = "with an API key" if api_key else "without an API key"
            server.serve(run, host=host, port=port, checkpoint=checkpoint, limits=limits, device=device,
                         threads=threads, graceful_timeout=graceful_timeout, log_level=log_level,
                         api_key=api_key, precision=precision,
                         on_ready=lambda: console.print(
                             f"serving {run} on http://{host}:{port} {key} (API docs at /docs; Ctrl-C stops)"))
        except PolytaskError as exc:
            fail(exc)
