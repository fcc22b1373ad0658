"""`leadline`: the operator's command line (issue 14). Thin: each command reads its settings,
runs one coroutine from its module, and hands the answer to `render`.

Every listing takes `--json` (one JSON document on stdout; `events tail` writes one per line).
A failure is one line on stderr and exit status 1 (not found, refused), 2 (usage, settings) or
3 (Kafka or PostgreSQL unreachable); `status` exits 1 when any part is not up.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Coroutine, Iterator
from datetime import datetime
from typing import Annotated, Any, TypeVar

import structlog
import typer
from rich.console import Console

from services.cli import dlq, events, kafka, render, sagas, status, trace
from services.cli.console.app import create_app
from services.cli.errors import USAGE, CliError, run
from services.cli.events import Seen
from services.cli.rebuild import rebuild
from services.cli.settings import CliSettings
from shared.auth import AuthSettings
from shared.runtime import configured, serve

T = TypeVar("T")

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Operate Leadline: health, topics and lag, events, dead letters, sagas, traces, console.",
)
events_app = typer.Typer(no_args_is_help=True, help="Records on a topic, decoded.")
dlq_app = typer.Typer(no_args_is_help=True, help="Dead letters: list, show, re-drive.")
saga_app = typer.Typer(no_args_is_help=True, help="The orchestrator's sagas.")
app.add_typer(events_app, name="events")
app.add_typer(dlq_app, name="dlq")
app.add_typer(saga_app, name="saga")

Json = Annotated[bool, typer.Option("--json", help="One JSON document on stdout, for scripts.")]
When = Annotated[
    str | None,
    typer.Option(help="An ISO 8601 time (UTC unless it says), or a span back: 30m, 2h, 1d."),
]


def _settings() -> CliSettings:
    return configured("leadline", CliSettings)


@contextlib.contextmanager
def _one_line() -> Iterator[None]:
    try:
        yield
    except CliError as exc:
        typer.echo(f"leadline: {exc}", err=True)
        raise typer.Exit(exc.status) from None


def _run(settings: CliSettings, work: Coroutine[Any, Any, T]) -> T:
    with _one_line():
        return run(work, bootstrap=settings.kafka_bootstrap_servers)


def _when(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return dlq.when(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


@app.command("status")
def status_command(as_json: Json = False) -> None:
    """Every Kafka broker, each service's database and each service's readiness."""
    settings = _settings()
    parts = _run(settings, status.everything(settings))
    if as_json:
        ok = all(p.state == "up" for p in parts)
        typer.echo(render.json_text({"ok": ok, "parts": [p.as_json() for p in parts]}))
    else:
        Console().print(render.status(parts))
    if any(p.state != "up" for p in parts):
        raise typer.Exit(1)


@app.command("topics")
def topics_command(
    names: Annotated[
        list[str] | None,
        typer.Argument(help="Topic names; default: the catalogue's and their dead-letter topics."),
    ] = None,
    every: Annotated[
        bool, typer.Option("--all", help="Every topic under the prefix (internal ones too).")
    ] = False,
    as_json: Json = False,
) -> None:
    """Partitions, end offsets, and the lag of every consumer group, per topic."""
    settings = _settings()

    async def go() -> list[kafka.TopicOffsets]:
        if names:
            physical = [settings.topic(n) for n in names]
        elif every:
            physical = await kafka.topics_under_prefix(settings)
        else:
            physical = await kafka.catalogue(settings)
        if not physical:
            where = f" under the prefix {settings.topic_prefix!r}" if settings.topic_prefix else ""
            raise CliError(
                f"no Leadline topics on {settings.kafka_bootstrap_servers}{where}: `make up` "
                "(or `python -m shared.kafka.admin ensure-topics`) creates them"
            )
        return await kafka.topic_offsets(settings, physical)

    found = _run(settings, go())
    if as_json:
        typer.echo(render.json_text(render.topics_json(found)))
    else:
        Console().print(render.topics(found))


@events_app.command("tail")
def tail_command(
    topic: Annotated[str, typer.Argument(help="A catalogue name, e.g. checkout.events.")],
    correlation: Annotated[
        str | None, typer.Option("--correlation", "-c", help="Only this correlation (order) id.")
    ] = None,
    types: Annotated[
        list[str] | None, typer.Option("--type", "-t", help="Only this message type (repeatable).")
    ] = None,
    from_beginning: Annotated[
        bool, typer.Option("--from-beginning", help="Start at the first record kept.")
    ] = False,
    follow: Annotated[
        bool, typer.Option("--follow/--no-follow", help="Wait for new records, or stop at the end.")
    ] = True,
    limit: Annotated[int | None, typer.Option(min=1, help="Stop after this many records.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Print the records of TOPIC as decoded envelopes; from the end, following, by default."""
    settings = _settings()
    console = Console()

    def ready(partitions: int) -> None:
        where = "the first record" if from_beginning else "the end"
        then = "following; Ctrl-C stops" if follow else "up to the end"
        typer.echo(f"reading {topic} ({partitions} partitions) from {where}, {then}", err=True)

    def emit(seen: Seen) -> None:
        if as_json:
            typer.echo(render.json_line(seen.as_json()))
        else:
            console.print(render.event(seen), soft_wrap=True)

    only = events.Only(correlation, frozenset(types or ()))
    read = events.Reading(from_beginning, follow, limit)
    with contextlib.suppress(KeyboardInterrupt):
        _run(settings, events.tail(settings, topic, only, read, ready=ready, emit=emit))


@dlq_app.command("list")
def dlq_list_command(
    topic: Annotated[
        str | None, typer.Option(help="A topic or its dead-letter topic; default: all.")
    ] = None,
    reason: Annotated[str | None, typer.Option(help="e.g. invalid-envelope, unknown-type.")] = None,
    since: When = None,
    until: When = None,
    limit: Annotated[int, typer.Option(min=1)] = 100,
    as_json: Json = False,
) -> None:
    """Dead letters, oldest first per topic partition."""
    settings = _settings()
    filters = dlq.Filters(reason, _when(since), _when(until))
    found = _run(settings, dlq.listed(settings, topic, filters, limit))
    if as_json:
        typer.echo(render.json_text({"dead_letters": [d.as_json(settings) for d in found]}))
    else:
        Console().print(render.letters(found, settings))


@dlq_app.command("show")
def dlq_show_command(
    letter_id: Annotated[str, typer.Argument(help="<topic>.dlq:<partition>:<offset>")],
    as_json: Json = False,
) -> None:
    """One dead letter: why, from where, and the record itself."""
    settings = _settings()
    found = _run(settings, dlq.found(settings, letter_id))
    if as_json:
        typer.echo(render.json_text(found.as_json(settings)))
    else:
        Console().print(render.letter(found, settings))


@dlq_app.command("redrive")
def dlq_redrive_command(
    letter_ids: Annotated[
        list[str] | None, typer.Argument(help="Dead letter ids; or choose them by the options.")
    ] = None,
    topic: Annotated[str | None, typer.Option(help="A topic or its dead-letter topic.")] = None,
    reason: Annotated[str | None, typer.Option()] = None,
    since: When = None,
    until: When = None,
    limit: Annotated[int, typer.Option(min=1)] = 100,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> None:
    """Re-produce dead letters to their origin topics (original key, value and headers), once
    the cause is fixed. Shows what it will send and asks first, unless --yes."""
    settings = _settings()
    chosen_by_filter = any(x is not None for x in (topic, reason, since, until))
    if bool(letter_ids) == chosen_by_filter:
        with _one_line():
            raise CliError(
                "name dead letters by id, or choose them with --topic/--reason/--since/--until",
                USAGE,
            )
    filters = dlq.Filters(reason, _when(since), _when(until))
    chosen = _run(settings, dlq.chosen(settings, letter_ids or [], topic, filters, limit))
    if not chosen:
        typer.echo("no dead letter matches: nothing to re-drive", err=True)
        return
    console = Console()
    console.print(f"will re-produce {len(chosen)} dead letter(s) to their origin topics:")
    console.print(render.letters(chosen, settings))
    if not yes:
        typer.confirm(f"re-drive {len(chosen)}?", abort=True)
    _run(settings, dlq.redrive(settings, chosen))
    typer.echo(f"re-driven: {len(chosen)}")


@saga_app.command("show")
def saga_show_command(order_id: str, as_json: Json = False) -> None:
    """One order's saga: status, deadline, and every step with what it sent."""
    settings = _settings()
    found = _run(settings, sagas.one(settings.orchestrator_database_url, order_id))
    if as_json:
        typer.echo(render.json_text(render.saga_json(found)))
    else:
        Console().print(render.saga(found))


@saga_app.command("list")
def saga_list_command(
    state: Annotated[
        str | None, typer.Option("--state", "-s", help="Only this status, e.g. paying.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    as_json: Json = False,
) -> None:
    """Counts of every status, and the newest sagas."""
    settings = _settings()
    counts, found = _run(settings, sagas.listed(settings.orchestrator_database_url, state, limit))
    if as_json:
        typer.echo(render.json_text(render.sagas_json(counts, found)))
    else:
        Console().print(render.sagas(counts, found))


@app.command("rebuild")
def rebuild_command(
    view: Annotated[str, typer.Argument(help="orders, stock, sales or outcomes.")],
) -> None:
    """Rebuild one projection view live, with a progress bar (the service keeps serving)."""
    settings = _settings()
    with _one_line():
        rebuild(settings, view)


@app.command("trace")
def trace_command(order_id: str, as_json: Json = False) -> None:
    """Every message of one order on every topic, as a tree by causation, with timings."""
    settings = _settings()
    found = _run(settings, trace.collect(settings, order_id))
    roots = trace.forest(found)
    if not roots:
        with _one_line():
            raise CliError(f"no decodable records of order {order_id!r}")
    if as_json:
        typer.echo(render.json_text(render.trace_json(order_id, roots)))
    else:
        Console().print(render.trace(order_id, roots))


@app.command("console")
def console_command(
    host: Annotated[
        str,
        typer.Option(help="Where to listen. Plain HTTP carries the token: keep it on loopback."),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8010,
) -> None:
    """The operator console, a web page: sagas by state and each saga's timeline, dead letters
    with re-drive, consumer lag per group, outbox backlog per service. Sign in with a token
    that has the admin scope (AUTH_* settings, as the services read them)."""
    settings = _settings()
    auth = configured("leadline console", AuthSettings)
    # the console's own warnings and uvicorn's start-up lines (the address, a port in use)
    # are for the operator who started it; the libraries below stay as quiet as for any command
    for name in ("uvicorn.error", "services.cli.console"):
        logging.getLogger(name).setLevel(logging.INFO)
    serve(create_app(settings, auth), host=host, port=port)


def main() -> None:
    # library diagnostics (aiokafka's connection errors, a producer's retries) stay quiet: an
    # operator reads the CLI's one line, a script reads stdout. Here, not in the commands, so
    # running the app in-process (tests) leaves the host's logging alone.
    logging.basicConfig(stream=sys.stderr, level=logging.CRITICAL)
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    app()


if __name__ == "__main__":
    main()
