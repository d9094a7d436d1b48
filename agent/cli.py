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
    from rich.markup import escape

    # soft_wrap: one line however narrow the terminal, so scripts can read it.
    Console(stderr=True).print(
        f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True
    )
    raise typer.Exit(2)


def _settings():
    from common.settings import SettingsError, load_settings

    try:
        return load_settings()
    except SettingsError as e:
        _fail(str(e))


def _chat_model(settings):
    """The configured chat model (None without TRAINOPS_LLM); a bad setting is a one-line error."""
    from agent.context import chat_model

    try:
        return chat_model(settings.llm)
    except ValueError as e:
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


# -- the agent ---------------------------------------------------------------------------------


def _run_agent(
    *,
    text: str | None,
    thread: str | None,
    json_out: bool,
    yes: bool,
    fallback: str | None,
    preset=None,
    resume: bool = False,
    decision: str | None = None,
    detach: bool = False,
    exit_on_error: bool = True,
) -> None:
    import asyncio
    import json
    import sys
    import uuid

    from rich.console import Console
    from rich.markup import escape

    from agent.display import ProgressDisplay
    from agent.pricing import money
    from agent.runner import Agent

    settings = _settings()
    llm = _chat_model(settings)
    thread_id = thread or uuid.uuid4().hex[:12]
    console = Console(stderr=json_out)
    progress = ProgressDisplay(console, enabled=not json_out)

    def approve(question: dict) -> str | None:
        if decision:
            return decision
        if yes:
            return "approve"
        if json_out or not sys.stdin.isatty():
            return None
        from rich.prompt import Confirm

        progress.stop()
        console.print(f"[yellow]Approval needed:[/yellow] {escape('; '.join(question['reasons']))}")
        estimate = question["estimate"]
        console.print(
            f"Estimate {money(estimate['cost_usd'])}, {estimate['duration_s']:.0f}s "
            f"({estimate['basis']})"
        )
        return "approve" if Confirm.ask("Launch anyway?", default=False) else "deny"

    async def go():
        async with Agent(
            settings, llm=llm, fallback_dataset=fallback, detach=detach, on_event=progress.update
        ) as agent:
            if resume:
                return await agent.resume(thread_id, approve=approve)
            return await agent.ask(thread_id, text or "", preset=preset, approve=approve)

    from agent.tools import ServerUnavailable

    try:
        result = asyncio.run(go())
    except ServerUnavailable as e:
        _fail(str(e))
    finally:
        progress.stop()
    if json_out:
        print(
            json.dumps(
                {**result.facts, "answer": result.answer, "thread_id": result.thread_id},
                default=str,
            )
        )
    else:
        console.print(result.answer, highlight=False, markup=False, soft_wrap=True)
        for warning in result.facts.get("warnings", []):
            console.print(
                f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False, soft_wrap=True
            )
        console.print(f"[dim]thread {result.thread_id}[/dim]")
    if exit_on_error and result.facts.get("error"):
        raise typer.Exit(1)  # answered, but what was asked could not be done (no such job, ...)


@app.command()
def ask(
    text: Annotated[str, typer.Argument(help='e.g. "Train a CNN on MNIST with 3 epochs"')],
    json_out: Annotated[bool, typer.Option("--json", help="Print the facts as JSON")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Approve over-budget launches")] = False,
    thread: Annotated[str | None, typer.Option(help="Continue this thread")] = None,
    fallback_dataset: Annotated[
        str | None,
        typer.Option(help="Train on this dataset (loudly) if the asked one can't be had"),
    ] = None,
    detach: Annotated[
        bool, typer.Option("--detach", help="Launch and return; follow up with the same --thread")
    ] = False,
) -> None:
    """Run one request through the agent: launch, watch, price and report."""
    _run_agent(
        text=text,
        thread=thread,
        json_out=json_out,
        yes=yes,
        fallback=fallback_dataset,
        detach=detach,
    )


@app.command()
def resume(
    thread: Annotated[str, typer.Argument(help="The thread to finish")],
    approve: Annotated[bool, typer.Option("--approve", help="Approve a pending launch")] = False,
    deny: Annotated[bool, typer.Option("--deny", help="Deny a pending launch")] = False,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Finish a thread whose agent stopped (crashed, killed, or waiting for approval)."""
    if approve and deny:
        _fail("--approve and --deny exclude each other; pick one")
    decision = "approve" if approve else ("deny" if deny else None)
    _run_agent(
        text=None,
        thread=thread,
        json_out=json_out,
        yes=False,
        fallback=None,
        resume=True,
        decision=decision,
    )


@app.command()
def chat(
    yes: Annotated[bool, typer.Option("--yes", "-y")] = False,
    fallback_dataset: Annotated[str | None, typer.Option()] = None,
) -> None:
    """A conversation: one thread for the whole session (exit with Ctrl-D or 'exit')."""
    import uuid

    from rich.prompt import Prompt

    thread = uuid.uuid4().hex[:12]
    while True:
        try:
            text = Prompt.ask("[bold]trainops[/bold]")
        except (EOFError, KeyboardInterrupt):
            break
        if text.strip().lower() in ("exit", "quit", "bye"):
            break
        if text.strip():
            _run_agent(
                text=text,
                thread=thread,
                json_out=False,
                yes=yes,
                fallback=fallback_dataset,
                exit_on_error=False,
            )


@app.command()
def parse(
    text: Annotated[str, typer.Argument()],
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show how a message is understood (the Request), without doing anything."""
    import json

    from agent.parsing.llm import parse_checked

    settings = _settings()
    request, warnings = parse_checked(text, _chat_model(settings))
    payload = request.model_dump(mode="json", exclude_none=True)
    if json_out:
        print(json.dumps(payload))
    else:
        from rich.console import Console

        Console().print_json(data=payload)
    for warning in warnings:
        from rich.console import Console
        from rich.markup import escape

        Console(stderr=True).print(
            f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False, soft_wrap=True
        )


def _preset(intent: str, **slots):
    from agent.request import Request

    return Request.model_validate(
        {"intent": intent, **{k: v for k, v in slots.items() if v is not None}}
    )


@app.command()
def jobs(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List jobs, newest first."""
    _run_agent(
        text="list jobs",
        thread=None,
        json_out=json_out,
        yes=False,
        fallback=None,
        preset=_preset("list"),
    )


@app.command()
def logs(
    job: Annotated[str, typer.Argument(help="Job id, or 'latest'")] = "latest",
    lines: Annotated[int, typer.Option(min=1, max=2000)] = 40,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The last lines of a job's output."""
    _run_agent(
        text=f"logs of {job}",
        thread=None,
        json_out=json_out,
        yes=False,
        fallback=None,
        preset=_preset("logs", job=job, lines=lines),
    )


@app.command()
def cost(
    job: Annotated[str, typer.Argument(help="Job id, or 'latest'")] = "latest",
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """What a job cost (so far, if it is still running)."""
    _run_agent(
        text=f"cost of {job}",
        thread=None,
        json_out=json_out,
        yes=False,
        fallback=None,
        preset=_preset("cost", job=job),
    )


@app.command(name="eval")
def evaluate(
    suite: Annotated[str, typer.Option(help="Which suite: nl")] = "nl",
    min_accuracy: Annotated[
        float, typer.Option(help="Fail below this exact-match accuracy on the development cases")
    ] = 0.0,
    min_heldout: Annotated[
        float, typer.Option(help="Fail below this exact-match accuracy on the held-out cases")
    ] = 0.0,
    show_failures: Annotated[
        bool, typer.Option("--failures", help="List the development cases that fail")
    ] = False,
) -> None:
    """Score the parser on the eval cases: accuracy per intent and per slot, for the
    development cases and, apart, for the held-out ones (whose failures are not listed: they
    are not for tuning the rules)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from agent.parsing import rules
    from agent.parsing.llm import parse_checked
    from evals.nl_suite import CASES_DIR, HELDOUT_DIR, SuiteResult, load_cases, run_suite

    if suite != "nl":
        _fail(f"unknown suite {suite!r}; the suites are: nl")
    llm = _chat_model(_settings())
    parser = (lambda text: parse_checked(text, llm)[0]) if llm else rules.parse
    result = run_suite(parser, load_cases(CASES_DIR))
    heldout = run_suite(parser, load_cases(HELDOUT_DIR))
    console = Console()

    def scores(split: str, outcome: SuiteResult) -> None:
        by = (("intent", outcome.intents), ("slot", outcome.slots), ("tag", outcome.tags))
        for title, table_scores in by:
            table = Table(title=f"{split}: accuracy per {title}")
            for column in (title, "right", "total", "accuracy"):
                table.add_column(column)
            for name, score in sorted(table_scores.items()):
                table.add_row(name, str(score.right), str(score.total), f"{score.accuracy:.1%}")
            console.print(table)

    scores("development", result)
    scores("held-out", heldout)
    console.print(
        f"exact match: {result.exact}/{result.cases} = {result.exact_accuracy:.1%} development, "
        f"{heldout.exact}/{heldout.cases} = {heldout.exact_accuracy:.1%} held-out "
        f"({'LLM' if llm else 'rules'})"
    )
    if show_failures:
        for case, got in result.failures:
            console.print(
                f"[red]x[/red] {escape(repr(case.text))}: "
                f"expected {case.intent} {escape(str(case.slots))}, got {escape(str(got))}"
            )
    if result.exact_accuracy < min_accuracy or heldout.exact_accuracy < min_heldout:
        raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
