"""A stacked bar chart as inline SVG, rendered on the server: no script, no external asset.

Pure: days and counts in, markup out. Colours are SVG presentation attributes (allowed
under a `default-src 'self'` content security policy, unlike inline `style`), chosen
to be told apart with common colour-vision deficiencies; every bar carries a `<title>`
with its figures, and the page puts the same figures in a table beside the chart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Final

from markupsafe import Markup, escape

# Okabe-Ito colours: distinguishable for the common colour-vision deficiencies.
PALETTE: Final = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")
_LEFT: Final = 44
_RIGHT: Final = 8
_TOP: Final = 12
_BOTTOM: Final = 52


@dataclass(frozen=True, slots=True)
class Series:
    """One stacked layer: its key (for CSS classes), its label and one count per day."""

    key: str
    label: str
    counts: Sequence[int]


def nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5 x 10^k that is at least `value` (at least 1)."""
    if value <= 1:
        return 1
    scale = 1
    while True:
        for step in (1, 2, 5):
            if step * scale >= value:
                return step * scale
        scale *= 10


def _ticks(top: int) -> list[int]:
    step = nice_ceiling(max(1, top // 4))
    return list(range(0, top + 1, step))


def bar_chart(
    days: Sequence[date],
    series: Sequence[Series],
    *,
    title: str,
    description: str,
    width: int = 960,
    height: int = 260,
    chart_id: str = "chart",
) -> Markup:
    """The chart as an `<svg>` element with `role="img"`, a title and a description."""
    if any(len(s.counts) != len(days) for s in series):
        raise ValueError("every series needs one count per day")
    totals = [sum(s.counts[i] for s in series) for i in range(len(days))]
    top = nice_ceiling(max(totals, default=0))
    plot_w = width - _LEFT - _RIGHT
    plot_h = height - _TOP - _BOTTOM
    slot = plot_w / max(1, len(days))
    bar = max(1.0, slot * 0.7)
    parts: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'aria-labelledby="{chart_id}-title {chart_id}-desc">',
        f'<title id="{chart_id}-title">{escape(title)}</title>',
        f'<desc id="{chart_id}-desc">{escape(description)}</desc>',
    ]
    parts += _axis(top, plot_w, plot_h)
    for i, day in enumerate(days):
        x = _LEFT + i * slot + (slot - bar) / 2
        parts += _stack(day, x, bar, [s.counts[i] for s in series], series, top, plot_h)
        if day.weekday() == 0:
            parts.append(
                f'<text class="chart-label" x="{x + bar / 2:.1f}" y="{_TOP + plot_h + 16}" '
                f'text-anchor="middle" font-size="11" fill="#222">{day:%d-%m}</text>'
            )
    parts += _legend(series, height)
    parts.append("</svg>")
    # Every text that came in (title, description, labels, keys) was escaped above.
    return Markup("".join(parts))  # noqa: S704


def _axis(top: int, plot_w: int, plot_h: int) -> list[str]:
    parts = []
    for tick in _ticks(top):
        y = _TOP + plot_h - plot_h * tick / top
        parts.append(
            f'<line class="chart-grid" x1="{_LEFT}" x2="{_LEFT + plot_w}" y1="{y:.1f}" '
            f'y2="{y:.1f}" stroke="#ccc" stroke-width="1"/>'
            f'<text class="chart-label" x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" '
            f'font-size="11" fill="#222">{tick}</text>'
        )
    parts.append(
        f'<line class="chart-axis" x1="{_LEFT}" x2="{_LEFT + plot_w}" y1="{_TOP + plot_h}" '
        f'y2="{_TOP + plot_h}" stroke="#222" stroke-width="1"/>'
    )
    return parts


def _stack(
    day: date, x: float, bar: float, counts: list[int], series: Sequence[Series], top: int,
    plot_h: int,
) -> list[str]:
    parts = []
    base = float(_TOP + plot_h)
    label = ", ".join(f"{s.label}: {c}" for s, c in zip(series, counts, strict=True))
    for index, (layer, count) in enumerate(zip(series, counts, strict=True)):
        if count <= 0:
            continue
        h = plot_h * count / top
        base -= h
        colour = PALETTE[index % len(PALETTE)]
        parts.append(
            f'<rect class="bar bar-{escape(layer.key)}" x="{x:.1f}" y="{base:.1f}" '
            f'width="{bar:.1f}" height="{h:.1f}" fill="{colour}">'
            f"<title>{day.isoformat()}: {escape(label)}</title></rect>"
        )
    return parts


def _legend(series: Sequence[Series], height: int) -> list[str]:
    parts = []
    x = _LEFT
    y = height - 14
    for index, layer in enumerate(series):
        colour = PALETTE[index % len(PALETTE)]
        parts.append(
            f'<rect x="{x}" y="{y - 10}" width="12" height="12" fill="{colour}"/>'
            f'<text class="chart-legend" x="{x + 16}" y="{y}" font-size="12" '
            f'fill="#222">{escape(layer.label)}</text>'
        )
        x += 24 + 8 * len(layer.label)
    return parts
