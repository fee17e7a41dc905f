"""The `sync-job` command line: parse, load config, call, map errors to exit codes. Nothing else."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from sync_job import __version__
from sync_job.errors import EXIT_INPUT, EXIT_INTERNAL, SyncError, first_line

log = logging.getLogger("sync_job")

app = typer.Typer(
    name="sync-job",
    help="Keep a Pipedrive CRM in sync with order data (customers, orders, payments CSVs).\n\n"
    "Example: sync-job demo    (no account needed: runs against a local Pipedrive sandbox)",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, PowerShell
    # Plain Click help: Typer's rich panels label every flag `<bool>` and box usage errors over 5 lines.
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)

T = TypeVar("T")

# No dir_okay=False: config.load says what is wrong with a folder in one line, Click in a usage box.
ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", metavar="FILE", help="YAML config file (see conf/demo.yaml).")
]
LogFormatOption = Annotated[
    str,
    typer.Option(
        "--log-format", metavar="FORMAT", help="auto (rich on a terminal, JSON lines otherwise), json or text."
    ),
]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")]

_verbose = False


def _say(message: str) -> None:
    """The one stderr line a failed command prints: whitespace folded, secrets from the environment masked."""
    from sync_job.logs import redact

    typer.echo(redact(" ".join(message.split())), err=True)


def _guard(action: Callable[[], T]) -> T:
    """Run a command body; a SyncError becomes one line on stderr and its exit code, never a traceback."""
    try:
        return action()
    except SyncError as exc:
        _say(f"error: {exc}")
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        _say("error: interrupted")
        raise typer.Exit(130) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:
        if _verbose:
            log.exception("internal error")
        # Only the first line: a Polars error goes on for a screen, the traceback is what --verbose is for.
        hint = "see the traceback above" if _verbose else "re-run with --verbose for the traceback"
        _say(f"internal error: {type(exc).__name__}: {first_line(exc)} ({hint})")
        raise typer.Exit(EXIT_INTERNAL) from None


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sync-job {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Keep a Pipedrive CRM in sync with order data."""


def _setup_logging(log_format: str, verbose: bool) -> bool:
    from sync_job import logs

    global _verbose
    _verbose = verbose
    if log_format not in ("auto", "json", "text"):
        _say(f"error: --log-format must be auto, json or text (got {log_format!r})")
        raise typer.Exit(EXIT_INPUT)
    return logs.setup(log_format, verbose)  # type: ignore[arg-type]


@app.command()
def transform(
    config: ConfigOption,
    log_format: LogFormatOption = "auto",
    verbose: VerboseOption = False,
) -> None:
    """Fetch the three sources and write WORKDIR/combined.csv (no Pipedrive access).

    Example: sync-job transform --config conf/demo.yaml
    """
    _setup_logging(log_format, verbose)

    def body() -> None:
        from sync_job import config as config_module
        from sync_job import sync

        settings = config_module.load(config)
        result = sync.transform(settings)
        typer.echo(
            f"combined.csv: {result.rows} orders, {result.rejected_orders} orders and "
            f"{result.rejected_payments} payments rejected -> {result.combined_path}"
        )

    _guard(body)


@app.command()
def generate(
    outdir: Annotated[Path, typer.Argument(help="Folder for raw_customers.csv, raw_orders.csv, raw_payments.csv.")],
    orders: Annotated[int, typer.Option("--orders", "-n", min=1, help="Number of orders.")] = 300,
    seed: Annotated[int, typer.Option("--seed", help="Random seed: same seed, same files.")] = 42,
) -> None:
    """Generate jaffle-shop shaped CSVs of any size, deterministically for a seed.

    Example: sync-job generate /tmp/jaffle --orders 10000000 --seed 7
    """

    def body() -> None:
        from sync_job import generate as generate_module
        from sync_job import workdir

        with workdir.guarded(outdir, role="output folder"):
            counts = generate_module.generate(outdir, orders=orders, seed=seed)
        typer.echo(", ".join(f"{name}: {n} rows" for name, n in counts.items()) + f" -> {outdir}")

    _guard(body)


@app.command()
def sandbox(
    port: Annotated[int, typer.Option("--port", help="TCP port on 127.0.0.1 (0 picks a free one).")] = 8765,
    burst: Annotated[int, typer.Option("--burst", help="Requests allowed per rolling 2-second window.")] = 40,
    fail_rate: Annotated[float, typer.Option("--fail-rate", help="Share of requests answered 5xx.")] = 0.0,
    drop_after_commit_rate: Annotated[
        float, typer.Option("--drop-after-commit-rate", help="Share of writes applied, then the connection cut.")
    ] = 0.0,
    latency_ms: Annotated[int, typer.Option("--latency-ms", help="Added latency per request.")] = 0,
    search_lag: Annotated[float, typer.Option("--search-lag", help="Seconds search lags behind writes.")] = 0.0,
    daily_budget: Annotated[
        int | None, typer.Option("--daily-budget", help="Daily API token budget (default: unlimited).")
    ] = None,
    state: Annotated[Path | None, typer.Option("--state", help="Keep the CRM state in this JSON file.")] = None,
    token: Annotated[
        str, typer.Option("--token", envvar="PIPEDRIVE_API_TOKEN", help="Token clients must send.", show_default=False)
    ] = "sandbox-token",  # noqa: S107 -- the local sandbox's own token
    seed: Annotated[int, typer.Option("--seed", help="Seed for fault injection.")] = 0,
    log_format: LogFormatOption = "auto",
    verbose: VerboseOption = False,
) -> None:
    """Run the local Pipedrive API v2 sandbox until interrupted.

    Example: sync-job sandbox --port 8765 --burst 40 --fail-rate 0.05
    """
    _setup_logging(log_format, verbose)

    def body() -> None:
        from sync_job.sandbox.server import SandboxOptions, serve

        options = SandboxOptions(
            token=token,
            burst=burst,
            fail_rate=fail_rate,
            drop_after_commit_rate=drop_after_commit_rate,
            latency_ms=latency_ms,
            search_lag_seconds=search_lag,
            daily_budget=daily_budget,
            state_file=state,
            seed=seed,
        )
        serve(options, port=port)

    _guard(body)


@app.command()
def run(
    config: ConfigOption,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; send no write request.")] = False,
    max_tokens: Annotated[
        int | None, typer.Option("--max-tokens", min=1, metavar="N", help="Cap on API tokens this run may spend.")
    ] = None,
    every: Annotated[
        str | None,
        typer.Option(
            "--every",
            metavar="SCHEDULE",
            help="Run forever: an interval like 24h / 30m (at most 366d), or a 5-field cron expression in UTC "
            "like '0 3 * * *' (no seconds field).",
        ),
    ] = None,
    full_read: Annotated[
        bool, typer.Option("--full-read", help="Read the whole CRM instead of what changed since the last run.")
    ] = False,
    recreate_fields: Annotated[
        bool,
        typer.Option("--recreate-fields", help="Create the id custom fields again when they were deleted in the CRM."),
    ] = False,
    allow_deletes: Annotated[
        bool,
        typer.Option("--allow-deletes", help="Mirror mode: delete even more than max_delete_fraction of the records."),
    ] = False,
    log_format: LogFormatOption = "auto",
    verbose: VerboseOption = False,
) -> None:
    """Fetch, transform, diff against Pipedrive and apply only the difference.

    Exit codes: 0 in sync; 1 partial or try later (failed records, budget, interrupted, Pipedrive
    unreachable); 2 a human must fix the config, input, credentials or workdir; 3 another run holds the
    workdir lock; 70 a bug.

    Example: PIPEDRIVE_API_TOKEN=... sync-job run --config conf/sync.yaml --dry-run
    """
    rich_output = _setup_logging(log_format, verbose)

    def body() -> int:
        from sync_job import config as config_module
        from sync_job import sync
        from sync_job.console import RunConsole

        if every is not None:  # `--every ""` is a mistake to report, not "run once"
            from sync_job import schedule

            schedule.parse_every(every)  # a bad --every is a config error before anything runs
        settings = config_module.load(config)
        options = sync.RunOptions(
            dry_run=dry_run,
            max_tokens=max_tokens,
            progress=RunConsole(rich_output),
            full_read=full_read,
            recreate_fields=recreate_fields,
            allow_deletes=allow_deletes,
        )
        if every is not None:
            from sync_job import schedule

            # --allow-deletes answers the guard of the run at hand: later runs of the schedule are guarded again.
            runs = itertools.chain([options], itertools.repeat(dataclasses.replace(options, allow_deletes=False)))
            return schedule.run_every(every, lambda: sync.run(settings, next(runs)).exit_code)
        return sync.run(settings, options).exit_code

    code = _guard(body)
    raise typer.Exit(code)


@app.command()
def history(
    config: ConfigOption,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Show at most this many runs.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
) -> None:
    """List past runs, newest first, from the reports in the workdir.

    Example: sync-job history --config conf/sync.yaml --limit 10
    """

    def body() -> None:
        from sync_job import config as config_module
        from sync_job import history as history_module

        settings = config_module.load(config)
        rows = [history_module.row(r) for r in history_module.load(settings.workdir, limit=limit)]
        typer.echo(history_module.as_json(rows) if as_json else history_module.table(rows))

    _guard(body)


@app.command()
def show(
    run_id: Annotated[str, typer.Argument(help="A run id from `sync-job history` (a unique prefix is enough).")],
    config: ConfigOption,
    as_json: Annotated[bool, typer.Option("--json", help="The whole JSON report.")] = False,
) -> None:
    """Show one past run: its summary and its failures.

    Example: sync-job show 20261202T031500 --config conf/sync.yaml
    """

    def body() -> None:
        from sync_job import config as config_module
        from sync_job import history as history_module

        settings = config_module.load(config)
        report = history_module.find(settings.workdir, run_id)
        typer.echo(report.to_json() if as_json else history_module.details(report))

    _guard(body)


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option("--workdir", help="Where combined.csv, results and the report go.")] = Path(
        ".sync-job/demo"
    ),
    log_format: LogFormatOption = "auto",
    verbose: VerboseOption = False,
) -> None:
    """Sync the bundled sample data into a local Pipedrive sandbox, twice: no account, no network.

    Example: sync-job demo
    """
    rich_output = _setup_logging(log_format, verbose)

    def body() -> int:
        from sync_job import demo as demo_module

        return demo_module.run_demo(workdir, rich_output=rich_output)

    raise typer.Exit(_guard(body))


def main(argv: list[str] | None = None) -> int:
    """The console script: the exit code of the command; a usage error is one line, not Click's usage box."""
    try:
        code = app(args=argv, prog_name="sync-job", standalone_mode=False)
    except typer.TyperException as exc:  # Click's usage errors: unknown option, missing value, bad number
        if type(exc).__name__ == "NoArgsIsHelpError":  # `sync-job` alone: the help is the answer, not an error
            typer.echo(exc.format_message())
            return int(exc.exit_code)
        context = getattr(exc, "ctx", None)
        hint = f" (see '{context.command_path} --help')" if context is not None else ""
        _say(f"error: {exc.format_message()}{hint}")
        return int(exc.exit_code)
    except typer.Abort:
        _say("error: aborted")
        return 1
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
