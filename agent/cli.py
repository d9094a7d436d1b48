"""`trainops`: the command line. Imports stay inside commands so that `--help` starts fast."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(
    name="trainops",
    help="Train, watch and price ML jobs on Kubernetes or this machine.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _fail(message: str) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(2)


def _settings():
    from mcp_servers.settings import SettingsError, load_settings

    try:
        return load_settings()
    except SettingsError as e:
        _fail(str(e))


def _print_stack(states, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in ("service", "state", "url", "pid", "note"):
        table.add_column(column)
    for s in states:
        table.add_row(
            s.name,
            "[green]running[/green]" if s.running else "[dim]stopped[/dim]",
            s.url or "",
            str(s.pid or ""),
            s.note or "",
        )
    Console().print(table)


@app.command()
def up(
    mlflow_port: Annotated[int | None, typer.Option(help="Port for MLflow (default: free)")] = None,
    prometheus_port: Annotated[
        int | None, typer.Option(help="Port for Prometheus (default: free)")
    ] = None,
) -> None:
    """Start the local MLflow server and Prometheus (idempotent) and record their URLs."""
    from agent.stack import LocalStack, StackError

    settings = _settings()
    overrides = {"mlflow_port": mlflow_port, "prometheus_port": prometheus_port}
    stack_settings = settings.stack.model_copy(
        update={k: v for k, v in overrides.items() if v is not None}
    )
    stack = LocalStack(settings.model_copy(update={"stack": stack_settings}))
    try:
        states = stack.up()
    except StackError as e:
        _fail(str(e))
    _print_stack(states, f"trainops stack ({stack.config_path})")


@app.command()
def down() -> None:
    """Stop exactly what `trainops up` started."""
    from agent.stack import LocalStack

    _print_stack(LocalStack(_settings()).down(), "trainops stack")


@app.command()
def status() -> None:
    """Show whether the local MLflow server and Prometheus are running, and where."""
    from agent.stack import LocalStack

    _print_stack(LocalStack(_settings()).status(), "trainops stack")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
