"""The run report as one self-contained HTML page: WORKDIR/reports/<run_id>.html and WORKDIR/report.html."""

from __future__ import annotations

import csv
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from sync_job import charts, history
from sync_job.report import RunReport, atomic_write

TREND_RUNS = 30
REJECTED_SAMPLES = 10
WINDOW_SECONDS = 2.0  # Pipedrive's rate limit counts requests per rolling 2-second window

_env = Environment(loader=PackageLoader("sync_job", "templates"), autoescape=select_autoescape(["html"]))


def render(report: RunReport, earlier: list[RunReport], rejected: dict[str, list[dict[str, str]]]) -> str:
    """The page (pure): this run, the runs before it (newest first) for the trend, samples of rejected rows."""
    runs = [report, *[r for r in earlier if r.run_id != report.run_id]][:TREND_RUNS][::-1]  # oldest first
    rows = [history.row(r) for r in runs]
    api = report.api
    limit = api.get("rate_limit_per_2s")
    timeline = api.get("timeline")
    used, remaining = api.get("tokens_used"), api.get("daily_remaining")
    counts = [(f"{entity} {key}", float(n)) for entity, c in report.counts.items() for key, n in c.items()]
    planned = [
        (f"{e['entity']} {kind}", float(e[kind]))
        for e in report.plan.get("entities", [])
        for kind in ("creates", "updates", "unchanged")
    ]
    return _env.get_template("report.html").render(
        report=report,
        row=history.row(report),
        charts={
            "counts": charts.hbars(counts or planned, "records per entity and action"),
            "phases": charts.hbars(list(report.durations.items()), "seconds per phase", " s"),
            "rate": charts.rate(
                timeline if isinstance(timeline, list) else [],
                limit / WINDOW_SECONDS if isinstance(limit, int) else None,
                "API requests per second",
            ),
            "tokens": charts.budget(
                used if isinstance(used, int) else None,
                remaining if isinstance(remaining, int) else None,
                "API tokens",
            ),
            "trend": Markup("").join(
                charts.trend(values, title)
                for title, values in (
                    ("writes", [float(r.creates + r.updates + r.deletes) for r in rows]),
                    ("failures", [float(r.failures) for r in rows]),
                    ("duration (s)", [r.duration_seconds for r in rows]),
                    ("API tokens", [None if r.tokens is None else float(r.tokens) for r in rows]),
                )
            ),
        },
        trend_runs=len(rows),
        failure_columns=["entity", "external_id", "action", "outcome", "status", "error", "consecutive_failures"],
        rejected=rejected,
        plan_entities=report.plan.get("entities", []),
    )


def rejected_samples(folder: Path | None, limit: int = REJECTED_SAMPLES) -> dict[str, list[dict[str, str]]]:
    """The first rows of each WORKDIR/rejected/*.csv, without reading the rest."""
    out: dict[str, list[dict[str, str]]] = {}
    if folder is None or not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.csv")):
        with path.open(encoding="utf-8", newline="") as file:
            rows = []
            for i, rec in enumerate(csv.DictReader(file)):
                if i >= limit:
                    break
                rows.append(rec)
        if rows:
            out[path.stem] = rows
    return out


def write(report: RunReport, workdir: Path) -> Path:
    """Render and write the run's page and the latest-run copy; records the path in the report."""
    rejected_dir = report.paths.get("rejected")
    page = render(
        report,
        history.load(workdir, limit=TREND_RUNS),  # may hold this run's report.json from an earlier write
        rejected_samples(Path(rejected_dir) if rejected_dir else None),
    )
    reports = workdir / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    path = reports / f"{report.run_id}.html"
    for target in (path, workdir / "report.html"):
        atomic_write(target, lambda tmp: tmp.write_text(page, encoding="utf-8"))
    report.paths["html"] = str(path)
    return path
