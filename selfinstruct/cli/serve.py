"""`selfinstruct serve`: vLLM's OpenAI-compatible server for the embedded model (or any checkpoint), so the
server path is one command too. Prints the base URL to put in a recipe's `backend.base_urls`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from selfinstruct.cli.app import app, console, plain


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def serve(
    ctx: typer.Context,
    model: Annotated[
        Path | None, typer.Option(help="Checkpoint directory. Default: the embedded model.")
    ] = None,
    port: Annotated[int, typer.Option(help="TCP port to listen on.")] = 8000,
    host: Annotated[
        str, typer.Option(help="Address to bind; 0.0.0.0 exposes it to the network.")
    ] = "127.0.0.1",
    max_model_len: Annotated[int | None, typer.Option(help="Longest prompt + completion, in tokens.")] = None,
    name: Annotated[
        str | None, typer.Option(help="Model name clients use. Default: the directory name.")
    ] = None,
    log_file: Annotated[
        Path | None, typer.Option(help="Where vLLM's log goes. Default: a temp file.")
    ] = None,
) -> None:
    """Start vLLM's OpenAI-compatible server, wait until it is healthy, print its URL; Ctrl-C stops it.

    Arguments after `--` go to vLLM's server unchanged, e.g. `selfinstruct serve -- --max-num-seqs 256`.
    """
    from selfinstruct.llm.server import start_server
    from selfinstruct.models import default_model_dir

    model = model or default_model_dir()

    def starting(port: int) -> None:  # once the model and the port passed their checks: none is refused after
        console.print(
            plain(f"starting vLLM for {model} on {host}:{port} (about 40 s on 2 CPU cores)...", None),
            soft_wrap=True,
        )

    # SIGINT/SIGTERM raise `Stopped` (cli/app.py): start_server stops the server and its engine on the way out.
    with start_server(
        model,
        host=host,
        port=port,
        served_model_name=name,
        max_model_len=max_model_len,
        log_path=log_file,
        extra_args=list(ctx.args),
        on_start=starting,
    ) as server:
        say = lambda text, **kw: console.print(text, soft_wrap=True, highlight=False, **kw)  # noqa: E731
        say(
            Text("serving ")
            .append(server.model_name, style="bold")
            .append(" at ")
            .append(server.base_url, style="bold green")
        )
        url, name = server.base_url, server.model_name
        say(f"recipe: backend: {{kind: openai, base_urls: [{url}], model: {name}}}")
        say(
            plain(
                f"log: {server.log_path} (server pid {server.process.pid}); Ctrl-C or SIGTERM stops the server",
                None,
            )
        )
        code = server.process.wait()
        say(Text(f"the server exited with code {code}", style="red").append("; last lines of its log:"))
        say(plain(server.log_tail(), None))
        raise typer.Exit(1)
