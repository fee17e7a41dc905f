"""Inline SVG charts for the HTML report (pure: numbers in, markup out; no script, no external request)."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

WIDTH, HEIGHT, PAD = 640, 180, 36
MAX_COLUMNS = 600  # a longer run's requests/s are drawn per bucket of seconds


def _svg(body: str, label: str, width: int = WIDTH, height: int = HEIGHT) -> Markup:
    # Every text interpolated into `body` by this module went through escape(); numbers are formatted by us.
    return Markup(  # noqa: S704
        f'<svg class="chart" role="img" aria-label="{escape(label)}" viewBox="0 0 {width} {height}" '
        f'width="100%" preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg">{body}</svg>'
    )


def _empty(text: str) -> Markup:
    return Markup('<p class="empty">{}</p>').format(text)


def _num(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 10 or value == int(value) else f"{value:.1f}"


def hbars(items: Sequence[tuple[str, float]], label: str, unit: str = "") -> Markup:
    """Horizontal bars, one per (name, value): counts per entity and action, seconds per phase."""
    if not items:
        return _empty("nothing to show")
    row, left = 26, 170
    top = max(v for _, v in items) or 1.0
    height = row * len(items) + 8
    parts = []
    for i, (name, value) in enumerate(items):
        y = 4 + i * row
        w = (WIDTH - left - 80) * value / top
        parts.append(
            f'<text x="{left - 8}" y="{y + 16}" text-anchor="end" class="lbl">{escape(name)}</text>'
            f'<rect class="bar" x="{left}" y="{y + 3}" width="{max(w, 1):.1f}" height="{row - 8}" rx="3">'
            f"<title>{escape(name)}: {_num(value)}{escape(unit)}</title></rect>"
            f'<text x="{left + w + 6:.1f}" y="{y + 16}" class="val">{_num(value)}{escape(unit)}</text>'
        )
    return _svg("".join(parts), label, height=height)


def rate(timeline: Sequence[Sequence[int]], limit_per_second: float | None, label: str) -> Markup:
    """Requests per second over the run as columns, the rate limit as a dashed line, 429s and retries marked."""
    if not timeline:
        return _empty("no API requests in this run")
    seconds = max(int(p[0]) for p in timeline) + 1
    timeline, width_s = _buckets(timeline, seconds)
    top = max([max(p[1] / width_s for p in timeline), limit_per_second or 0, 1])
    width, height = 2 * WIDTH, HEIGHT + 40  # drawn across the page's full width
    plot_w, plot_h = width - 2 * PAD, height - 2 * PAD
    step = plot_w * width_s / seconds

    def y(v: float) -> float:
        return PAD + plot_h - plot_h * v / top

    parts = [
        f'<line class="axis" x1="{PAD}" y1="{PAD + plot_h}" x2="{PAD + plot_w}" y2="{PAD + plot_h}"/>',
        f'<text class="lbl" x="{PAD - 4}" y="{PAD + 4}" text-anchor="end">{_num(top)}</text>',
        f'<text class="lbl" x="{PAD + plot_w}" y="{height - 8}" text-anchor="end">{seconds} s</text>',
        f'<text class="lbl" x="{PAD}" y="{height - 8}">0 s</text>',
    ]
    for bucket, answered, limited, failed in timeline:
        x, second, per_second = PAD + bucket * step, bucket * width_s, answered / width_s
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{y(per_second):.1f}" width="{max(step - 1, 0.5):.1f}" '
            f'height="{PAD + plot_h - y(per_second):.1f}">'
            f"<title>{second} s: {_num(per_second)} requests/s</title></rect>"
        )
        if limited:
            parts.append(
                f'<circle class="mark429" cx="{x + step / 2:.1f}" cy="{PAD - 10}" r="4">'
                f"<title>{second} s: {limited} answered 429</title></circle>"
            )
        if failed:
            parts.append(
                f'<rect class="markretry" x="{x + step / 2 - 4:.1f}" y="{PAD - 24}" width="8" height="8">'
                f"<title>{second} s: {failed} failed and retried (5xx or no answer)</title></rect>"
            )
    if limit_per_second:
        ly = y(limit_per_second)
        parts.append(
            f'<line class="limit" x1="{PAD}" y1="{ly:.1f}" x2="{PAD + plot_w}" y2="{ly:.1f}"/>'
            f'<text class="lbl limitlbl" x="{PAD + plot_w}" y="{ly - 4:.1f}" text-anchor="end">'
            f"rate limit {_num(limit_per_second)}/s</text>"
        )
    return _svg("".join(parts), label, width=width, height=height)


def _buckets(timeline: Sequence[Sequence[int]], seconds: int) -> tuple[list[tuple[int, int, int, int]], int]:
    """Merge seconds into buckets so a long run draws at most MAX_COLUMNS columns; returns them and their width."""
    width_s = -(-seconds // MAX_COLUMNS)  # ceiling division
    merged: dict[int, list[int]] = {}
    for point in timeline:
        counts = merged.setdefault(int(point[0]) // width_s, [0, 0, 0])
        for i in range(3):
            counts[i] += int(point[i + 1])
    return [(b, c[0], c[1], c[2]) for b, c in sorted(merged.items())], width_s


def budget(used: int | None, remaining: int | None, label: str) -> Markup:
    """Tokens this run spent against what the day's budget had left before it."""
    if used is None:
        return _empty("no token accounting for this destination")
    if remaining is None:
        return _empty(f"{used} tokens used; the API reported no daily budget")
    total = used + remaining
    share = used / total if total else 1.0
    inner = WIDTH - 2 * PAD
    text = f"{used} tokens used, {remaining} left today"
    return _svg(
        f'<rect class="track" x="{PAD}" y="20" width="{inner}" height="22" rx="4"/>'
        f'<rect class="bar" x="{PAD}" y="20" width="{max(inner * share, 1):.1f}" height="22" rx="4">'
        f"<title>{escape(text)}</title></rect>"
        f'<text class="lbl" x="{PAD}" y="62">{escape(text)}</text>',
        label,
        height=72,
    )


def trend(values: Sequence[float | None], title: str) -> Markup:
    """One small line chart over the last runs, oldest left; a run without the value leaves a gap."""
    width, height, pad = 300, 110, 24
    known = [v for v in values if v is not None]
    if not known:
        return _empty(f"{title}: no data")
    top = max(known) or 1.0
    n = len(values)

    def point(i: int, v: float) -> str:
        x = pad + (width - 2 * pad) * (i / (n - 1) if n > 1 else 0.5)
        return f"{x:.1f},{pad + (height - 2 * pad) * (1 - v / top):.1f}"

    pts = [point(i, v) for i, v in enumerate(values) if v is not None]
    dots = "".join(
        f'<circle class="dot" cx="{p.split(",")[0]}" cy="{p.split(",")[1]}" r="2.5"><title>{_num(v)}</title></circle>'
        for p, v in zip(pts, known, strict=True)
    )
    body = (
        f'<text class="lbl" x="{pad}" y="14">{escape(title)} (max {_num(top)})</text>'
        f'<line class="axis" x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}"/>'
        f'<polyline class="line" points="{" ".join(pts)}"/>{dots}'
    )
    return _svg(body, title, width=width, height=height)
