"""I/O edge of the transform: check and scan the three CSVs, stream combined.csv and the rejects to disk."""

from __future__ import annotations

import codecs
import csv
import difflib
import functools
import io
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import polars as pl

from sync_job import staging, transform
from sync_job.errors import ConfigError, DataError, InputError, first_line

log = logging.getLogger(__name__)

SOURCES = ("customers", "orders", "payments")
# The CSV reader's default read-ahead buffers hundreds of MB per file; 4 MB chunks keep the scans
# small next to the join tables at no measurable cost in speed (see bench/transform.py).
_ENGINE_DEFAULTS = {"POLARS_CSV_CHUNK_SIZE": str(4 * 1024 * 1024)}
_ROW = "row"  # row-index column added on the error path only
_NAME_SAMPLE = 50_000  # customers rows read up front to see whether names repeat (a few ms)
_ORDER_SAMPLE = 10_000  # orders rows read up front to see whether the file is sorted by id
_TAIL_BYTES = 64 * 1024  # enough to hold the last line of any orders file we have met
_HEADER_BYTES = 64 * 1024  # a first line longer than this is no header: a binary file, or no line ends
_SCAN_BYTES = 1 << 20
_BLANK = b' \t\r\n,"'  # what a data line without a value consists of


@dataclass(frozen=True, slots=True)
class _Outputs:
    """Where one transform writes: combined.csv's open file and the rejects' temp paths."""

    combined: io.FileIO
    rejected_orders: Path
    rejected_payments: Path


@dataclass(frozen=True, slots=True)
class TransformResult:
    combined_path: Path
    customers_path: Path  # the customers source file itself (validated in place, not copied)
    rows: int
    customers: int
    rejected_orders: int
    rejected_payments: int
    rejected_dir: Path
    seconds: float


def build_combined(
    paths: Mapping[str, Path], workdir: Path, value_expression: str, passthrough: Sequence[str] = ()
) -> TransformResult:
    """Validate the sources and write WORKDIR/combined.csv and WORKDIR/rejected/{orders,payments}.csv.

    One streaming pass does the joins, the sinks and the cheap checks; a failed check or an
    unparsable value leaves no output file behind (everything is written to temp files first).
    `passthrough` names extra columns of the orders or customers file (orders first) that combined.csv carries
    on, as text; a name in neither is a ConfigError (the mapping uses a column the sources lack).
    """
    started = time.perf_counter()
    value = transform.value_expression(value_expression)
    for name, setting in _ENGINE_DEFAULTS.items():
        os.environ.setdefault(name, setting)
    headers = {name: read_header(name, Path(paths[name])) for name in SOURCES}
    keep = _passthrough(passthrough, headers, paths)
    frames = {name: scan(name, Path(paths[name]), headers[name], keep.get(name, ())) for name in SOURCES}
    try:
        sample = frames["customers"].head(_NAME_SAMPLE).collect()
    except pl.exceptions.PolarsError as exc:
        raise _locate_failure(paths, headers, exc) from None
    order_range = _order_range_guess(Path(paths["orders"]), headers["orders"], frames["orders"])
    plan = functools.partial(
        transform.combine,
        frames["customers"],
        frames["orders"],
        frames["payments"],
        value,
        repetitive_names=transform.repetitive_names(sample),
        order_range=order_range,
        passthrough=passthrough,
    )
    rejected_dir = workdir / "rejected"
    rejected_dir.mkdir(parents=True, exist_ok=True)
    targets = [workdir / "combined.csv", rejected_dir / "orders.csv", rejected_dir / "payments.csv"]
    with staging.recycled(targets[0]) as combined_file, staging.staged(targets[1:]) as temps:
        outputs = _Outputs(combined_file, *temps)
        unknown_orders, facts, values = _main_pass(plan(label_dates=True), outputs, paths, headers, value_expression)
        log.debug("main pass done after %.2fs", time.perf_counter() - started)
        for name in SOURCES:
            _check(name, Path(paths[name]), headers[name], facts[name])
        if not transform.sums_fit(facts["orders"], facts["payments"]):
            _check_sums(Path(paths["payments"]), frames["payments"])
        unusable = transform.first_unusable_value(values)
        if unusable is not None:
            order, what = unusable
            raise ConfigError(
                f"value expression {value_expression!r} gives {what} for order {order}: "
                f"every order needs a finite deal value below {transform.VALUE_LIMIT:.0e} in size"
            )
        if facts["orders"]["unlabelled"]:
            log.info("some orders are dated outside %s..%s: writing combined.csv again", *transform.LABELLED_DAYS)
            combined_file.seek(0)
            unknown_orders, facts, _ = _main_pass(plan(label_dates=False), outputs, paths, headers, value_expression)
        rejected_orders = int(facts["orders"]["rejected"])
        rejected_payments = int(unknown_orders["payment_count"].sum())
        exact = order_range is not None and transform.beyond_range_is_exact(
            order_range, facts["orders"], facts["payments"]["beyond"], rejected_payments
        )
        if not exact:
            # A second read of payments, only when the pass could not pick them out by the id range:
            # holding every payment until the join has seen all orders would cost far more memory.
            log.debug("orders id range guess %s misses some rejected payments: reading again", order_range)
            payments = frames["payments"] if unknown_orders.height else frames["payments"].head(0)
            transform.rejected_payments_for(payments, unknown_orders.lazy()).sink_csv(
                outputs.rejected_payments, maintain_order=False, engine="streaming"
            )
        log.debug("rejected payments done after %.2fs", time.perf_counter() - started)
    outcome = TransformResult(
        combined_path=targets[0],
        customers_path=Path(paths["customers"]),
        rows=facts["orders"]["rows"] - rejected_orders,
        customers=facts["customers"]["rows"],
        rejected_orders=rejected_orders,
        rejected_payments=rejected_payments,
        rejected_dir=rejected_dir,
        seconds=time.perf_counter() - started,
    )
    log.info(
        "combined %d orders (%d rejected orders, %d rejected payments) in %.1fs -> %s",
        outcome.rows,
        outcome.rejected_orders,
        outcome.rejected_payments,
        outcome.seconds,
        outcome.combined_path,
    )
    return outcome


def _main_pass(
    result: transform.Combined,
    outputs: _Outputs,
    paths: Mapping[str, Path],
    headers: Mapping[str, list[str]],
    value_text: str,
) -> tuple[pl.DataFrame, dict[str, dict[str, Any]], dict[str, Any]]:
    """Stream combined.csv, the rejected orders (and payments beyond the orders) to `outputs` in one
    pass; return the unknown orders, each source's check facts and the deal values' facts."""
    try:
        frames = pl.collect_all(
            [
                result.combined.sink_csv(outputs.combined, lazy=True, maintain_order=False),
                result.rejected_orders.sink_csv(outputs.rejected_orders, lazy=True, maintain_order=False),
                result.unknown_orders,
                *(result.checks[name] for name in SOURCES),
                result.values,
                *_beyond_sink(result.beyond_orders, outputs.rejected_payments),
            ],
            engine="streaming",
        )
    except pl.exceptions.PolarsError as exc:
        raise _locate_failure(paths, headers, exc, value_text) from None
    facts = {name: frame.row(0, named=True) for name, frame in zip(SOURCES, frames[3:6], strict=True)}
    return frames[2], facts, frames[6].row(0, named=True)


def _beyond_sink(beyond_orders: pl.LazyFrame | None, path: Path) -> list[pl.LazyFrame]:
    if beyond_orders is None:
        return []
    return [beyond_orders.sink_csv(path, lazy=True, maintain_order=False)]


def _order_range_guess(path: Path, header: list[str], orders: pl.LazyFrame) -> tuple[int, int] | None:
    """The orders' id range if the file looks sorted by id: the first and the last line's ids.

    Exports are usually sorted by key, and a payment whose order is missing is usually one for an order
    newer than the export, beyond its last id. Only a guess: `beyond_range_is_exact` checks it after
    the pass, so a wrong one (an unsorted file, an odd last line) costs the second read, never a row.
    """
    try:
        head = orders.head(_ORDER_SAMPLE).select(transform.KEY).collect().to_series()
    except pl.exceptions.PolarsError:
        return None  # the main pass names the problem
    if head.is_empty() or head.null_count() or not head.is_sorted():
        return None
    last = _last_id(path, header)
    first = int(head[0])
    return (first, last) if last is not None and last >= first else None


def _last_id(path: Path, header: list[str]) -> int | None:
    with path.open("rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        handle.seek(max(0, size - _TAIL_BYTES))
        tail = handle.read()
    lines = [line for line in tail.splitlines() if line.strip()]
    if len(lines) < 2:  # the tail must hold a whole last line
        return None
    try:
        record = next(csv.reader([lines[-1].decode("utf-8")]))
        return int(record[header.index(transform.KEY)]) if len(record) == len(header) else None
    except (UnicodeDecodeError, ValueError, csv.Error, StopIteration):
        return None


def _passthrough(
    names: Sequence[str], headers: Mapping[str, list[str]], paths: Mapping[str, Path]
) -> dict[str, tuple[str, ...]]:
    """Which source keeps each passed-through column: orders first, then customers."""
    keep: dict[str, list[str]] = {"orders": [], "customers": []}
    for name in names:
        source = next((s for s in ("orders", "customers") if name in headers[s]), None)
        if source is None:
            raise ConfigError(
                f"the field mapping uses column {name!r}, which neither the combined rows nor "
                f"{paths['orders']} nor {paths['customers']} has"
            )
        keep[source].append(name)
    return {source: tuple(columns) for source, columns in keep.items()}


def combined_schema(passthrough: Sequence[str] = ()) -> pl.Schema:
    """combined.csv's columns: COMBINED_SCHEMA's, then the passed-through ones as text."""
    return pl.Schema({**transform.COMBINED_SCHEMA, **{name: pl.String() for name in passthrough}})


def read_combined(path: Path, passthrough: Sequence[str] = ()) -> pl.DataFrame:
    """combined.csv (as written by build_combined) back into memory with its schema."""
    order = [*transform.COMBINED_SCHEMA.names(), *passthrough]
    with path.open(encoding="utf-8", newline="") as handle:  # written by this job: one short header line
        header = next(csv.reader([handle.readline().rstrip("\r\n")]), [])
    if header != order:
        raise DataError(f"{path}: columns {header} are not {order}: was it written by another run?")
    return pl.scan_csv(path, schema=combined_schema(passthrough)).collect(engine="streaming")


def read_customers(path: Path, passthrough: Sequence[str] = ()) -> pl.DataFrame:
    """The validated customers (id, first_name, last_name, then `passthrough`): every one becomes a person.

    A `passthrough` column the file lacks is a ConfigError: the persons' mapping uses a column it does not have.
    """
    header = read_header("customers", path)
    missing = [name for name in passthrough if name not in header]
    if missing:
        raise ConfigError(
            f"persons.fields uses column {missing[0]!r}, which {path} lacks (columns: {', '.join(header)})"
        )
    frame = scan("customers", path, header, tuple(passthrough))
    try:
        customers = frame.collect(engine="streaming")
    except pl.exceptions.PolarsError as exc:
        raise _locate_failure({"customers": path}, {"customers": header}, exc) from None
    facts = transform.source_checks("customers", customers.lazy()).collect().row(0, named=True)
    _check("customers", path, header, facts)
    return customers


def read_header(name: str, path: Path) -> list[str]:
    """The header of a source; DataError if the file is not CSV text, empty, header-only or lacks a column.

    Reads a bounded amount, so a binary file, a sparse file of NULs or one endless line fails at once: the
    header line (at most _HEADER_BYTES), the rest only until it meets a value, and the file's last block.
    """
    expected = transform.SCHEMAS[name].names()
    try:
        with path.open("rb") as handle:
            head = handle.read(_HEADER_BYTES)
            end = head.find(b"\n")
            _check_text(path, head, end)
            has_data = end >= 0 and _has_value(head[end + 1 :], handle)
    except FileNotFoundError:
        raise DataError(f"{path}: {name} file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read the {name} file ({exc.strerror})") from None
    line = head if end < 0 else head[:end]
    try:
        text = line.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: line 1: not UTF-8 text (byte {exc.start}): save the file as UTF-8") from None
    header = next(csv.reader([text.rstrip("\r")]), [])
    if not any(field.strip() for field in header):
        raise DataError(f"{path}: empty file, expected a header line with {', '.join(expected)}")
    found = [field.strip() for field in header]
    for column in expected:
        if column not in found:
            unused = [f for f in found if f not in expected]
            close = difflib.get_close_matches(column, unused, n=1, cutoff=0.5)
            hint = f"; is {close[0]!r} meant to be {column!r}?" if close else ""
            raise DataError(
                f"{path}: line 1: missing column {column!r} (expected {', '.join(expected)}; "
                f"found {', '.join(found)}){hint}"
            )
    repeated = [f for i, f in enumerate(found) if f in found[:i]]
    if repeated:
        raise DataError(f"{path}: line 1: column {repeated[0]!r} appears twice in the header")
    if not has_data:
        raise DataError(f"{path}: header only, no data rows")
    return found


def _check_text(path: Path, head: bytes, end: int) -> None:
    """DataError unless the file looks like UTF-8 text: no UTF-16, no NUL byte at its start, in a hole
    (a sparse file reads as NULs) or in its last block, and a first line of sane length."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise DataError(f"{path}: UTF-16 text (it starts with a UTF-16 byte order mark): save it as UTF-8")
    nul = head.find(b"\0")
    if nul >= 0:
        line = head.count(b"\n", 0, nul) + 1
        raise DataError(f"{path}: line {line}: NUL byte (byte {nul}): a binary file, not CSV text")
    if end < 0 and len(head) == _HEADER_BYTES:
        raise DataError(f"{path}: line 1 is longer than {_HEADER_BYTES // 1024} KiB: not a CSV header")
    later = _nul_beyond(path, len(head))
    if later is not None:
        raise DataError(f"{path}: NUL bytes from byte {later} (a sparse, preallocated or damaged file): not CSV text")


def _nul_beyond(path: Path, start: int) -> int | None:
    """The offset of a NUL byte past `start` found cheaply (where the first hole's run of NULs starts, or in
    the last block), or None."""
    with path.open("rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        if start >= size:
            return None
        try:
            hole = os.lseek(handle.fileno(), start, os.SEEK_HOLE)
        except OSError:  # a file system that cannot tell
            hole = size
        # A hole starts on a block boundary; the NULs may start earlier, in the block before it. Read up to the
        # hole only: past it lie the rows after the hole, which would hide where the NULs start.
        end = min(hole, size)
        block_start = max(start, end - _TAIL_BYTES)
        handle.seek(block_start)
        block = handle.read(end - block_start)
    if hole < size:
        return block_start + len(block.rstrip(b"\0"))
    nul = block.find(b"\0")
    return None if nul < 0 else block_start + nul


def _has_value(rest: bytes, handle: BinaryIO) -> bool:
    """Whether the data after the header holds any value (not only separators, quotes and blank lines)."""
    block = rest
    while True:
        if block.translate(None, _BLANK):
            return True
        block = handle.read(_SCAN_BYTES)
        if not block:
            return False


def scan(name: str, path: Path, header: list[str], keep: Sequence[str] = ()) -> pl.LazyFrame:
    """A lazy, typed scan of a checked source; extra columns are read as text, and dropped unless kept."""
    schema = transform.SCHEMAS[name]
    file_schema = {column: schema.get(column, pl.String) for column in header}
    return pl.scan_csv(path, schema=file_schema).select(*schema.names(), *[c for c in keep if c not in schema])


def _check(name: str, path: Path, header: list[str], facts: Mapping[str, int | None]) -> None:
    """Raise DataError for the first missing required value or duplicated key of a source.

    The main pass only counts; naming the line or key costs a rescan, paid on this path alone (and,
    for the duplicate search, by sources whose keys are not one dense range).
    """
    if not facts["rows"]:
        raise DataError(f"{path}: header only, no data rows")
    if facts["invalid"]:
        raise _locate_failure({name: path}, {name: header}, None)
    if transform.keys_unique(facts):
        return
    duplicate = transform.first_duplicate(scan(name, path, header).select(transform.KEY).collect().to_series())
    if duplicate is not None:
        same = pl.col(transform.KEY).cast(pl.Int64, strict=False) == duplicate
        rows = _text_scan(name, path, header).filter(same).head(2).collect()[_ROW].to_list()
        where = " and ".join(str(line) for line in _lines(path, rows))
        raise DataError(f"{path}: duplicate {name} {transform.KEY} {duplicate} on lines {where}")


def _check_sums(path: Path, payments: pl.LazyFrame) -> None:
    """Error path, when the pass could not prove every amount sum fits Int64: find the first that does not."""
    over = transform.overflowing_sums(payments).head(1).collect(engine="streaming")
    if over.height:
        order, total = over.row(0)
        raise DataError(
            f"{path}: order {order}: its payments sum to {total} cents, "
            f"beyond what a 64-bit amount holds ({transform.INT64_MIN} to {transform.INT64_MAX})"
        )


def _locate_failure(
    paths: Mapping[str, Path],
    headers: Mapping[str, list[str]],
    exc: BaseException | None,
    value_text: str | None = None,
) -> InputError:
    """Error path only: rescan the sources as text to name the file, line, column and value at fault.

    If the sources read cleanly and the failed pass computed deal values (`value_text`), the value
    expression failed on some order: Decimal arithmetic (`amount_cents / 0.0`) raises where floats give inf.
    """
    for name, header in headers.items():
        path = Path(paths[name])
        try:
            found = transform.first_bad_value(name, _text_scan(name, path, header)).collect()
        except pl.exceptions.PolarsError as read_error:  # not even text: say where it stops being UTF-8
            return _unreadable(name, path, read_error)
        if found.height:
            row, column, problem, values = found.row(0)
            value = values[column]
            shown = "" if value is None else f": {_shorten(value)!r}"
            return DataError(f"{path}: line {_lines(path, [row])[0]}: {column}: {problem}{shown}")
    for name, header in headers.items():  # not a value problem: let the reader say what it is
        path = Path(paths[name])
        try:
            scan(name, path, header).select(pl.all().null_count()).collect(engine="streaming")
        except pl.exceptions.PolarsError as read_error:
            return _unreadable(name, path, read_error)
    if exc is not None and value_text is not None:
        return ConfigError(f"value expression {value_text!r} cannot be computed for every order: {first_line(exc)}")
    return DataError(f"cannot combine the sources: {first_line(exc) if exc else 'unknown problem'}")


def _unreadable(name: str, path: Path, read_error: BaseException) -> DataError:
    where = _first_non_utf8(path)
    if where is not None:
        line, byte = where
        return DataError(f"{path}: line {line}: not UTF-8 text (byte {byte}): save the file as UTF-8")
    return DataError(f"{path}: cannot read {name}: {first_line(read_error)}")


def _first_non_utf8(path: Path) -> tuple[int, int] | None:
    """Error path only: (line, byte offset) of the first byte that is not UTF-8, or None."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = lines = 0
    with path.open("rb") as handle:
        while block := handle.read(_SCAN_BYTES):
            pending = decoder.getstate()[0]  # the start of a character cut by the last block: no line ends
            try:
                decoder.decode(block)
            except UnicodeDecodeError as exc:
                bad = exc.start - len(pending)  # exc.start counts from the start of pending + block
                return lines + block.count(b"\n", 0, max(bad, 0)) + 1, offset + bad
            offset += len(block)
            lines += block.count(b"\n")
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return lines + 1, offset - len(decoder.getstate()[0])
    return None


def _shorten(text: str, keep: int = 40) -> str:
    """A value short enough for a one-line message: a huge field is shown by its start and its length."""
    return text if len(text) <= keep else f"{text[:keep]}... ({len(text):,} characters)"


def _text_scan(name: str, path: Path, header: list[str]) -> pl.LazyFrame:
    return pl.scan_csv(path, schema={column: pl.String for column in header}, row_index_name=_ROW).select(
        _ROW, *transform.SCHEMAS[name].names()
    )


def _lines(path: Path, rows: list[int]) -> list[int]:
    """The file line each data row (0-based, as the row index counts them) starts on; the header is line 1.

    Error path only. Without a quote in the file every row is one line; otherwise a quoted field may
    span lines, so the csv module reads up to the last row asked for and counts them.
    """
    if not rows or not _has_quote(path):
        return [row + 2 for row in rows]
    wanted, starts = set(rows), {}
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            for index, _ in enumerate(reader):  # record 0 is the header; data row r is record r + 1
                if index in wanted:
                    starts[index] = reader.line_num + 1  # the line after the end of the record before it
                    if len(starts) == len(wanted):
                        break
    except (csv.Error, UnicodeDecodeError):  # a file the csv module cannot read: count rows as lines
        pass
    return [starts.get(row, row + 2) for row in rows]


def _has_quote(path: Path, chunk: int = 1 << 24) -> bool:
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            if b'"' in block:
                return True
    return False
