"""Inline SVG charts for the report: line profiles, histograms, heatmaps and sequence logos.

Plain strings, no JavaScript, no fonts or URLs: every chart is an `<svg>` element that the page
embeds directly, so `report.html` opens offline. Every label that comes from data is escaped.
"""

from __future__ import annotations

import math
from html import escape

import numpy as np

# Colour-blind-friendly line colours (Okabe-Ito), cycled per series.
PALETTE = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000")
DNA_COLOURS = {"A": "#109648", "C": "#255c99", "G": "#f7b32b", "T": "#d62839", "U": "#d62839"}
# Protein letters by chemistry: acidic red, basic blue, polar green, hydrophobic black,
# other purple.
_PROTEIN_GROUPS = {
    "DE": "#d62839",
    "KRH": "#255c99",
    "STYCNQG": "#109648",
    "AVLIPWFM": "#222222",
}
MARGIN = {"left": 56, "right": 12, "top": 38, "bottom": 40}  # the legend sits above the plot


def diverging_colour(value: float) -> str:
    """Captum's text-visualisation colour: red for negative, green for positive scores.

    Args:
        value: a score already scaled to [-1, 1] (clipped when outside).
    """
    v = max(-1.0, min(1.0, float(value))) if math.isfinite(value) else 0.0
    if v > 0:
        return f"hsl(120, 75%, {100 - int(50 * v)}%)"
    return f"hsl(0, 75%, {100 - int(-40 * v)}%)"


def fmt(value: float) -> str:
    """Short number for labels and tooltips (3 significant digits)."""
    if value is None or not math.isfinite(float(value)):
        return str(value)
    return f"{float(value):.3g}"


def _svg(width: int, height: int, body: list[str], label: str, css_class: str = "chart") -> str:
    return (
        f'<svg class="{css_class}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}">'
        f"<title>{escape(label)}</title>{''.join(body)}</svg>"
    )


def _text(x: float, y: float, text: str, size: int = 11, anchor: str = "middle", **attrs) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{escape(str(v))}"' for k, v in attrs.items())
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}"{extra}>'
        f"{escape(text)}</text>"
    )


def _ticks(lo: float, hi: float, n: int = 5) -> np.ndarray:
    """Round tick values covering [lo, hi]."""
    if not hi > lo:
        return np.array([lo])
    step = 10 ** math.floor(math.log10((hi - lo) / n))
    for mult in (1, 2, 5, 10):
        if (hi - lo) / (step * mult) <= n:
            step *= mult
            break
    return np.arange(math.ceil(lo / step) * step, hi + step * 1e-9, step)


class _Frame:
    """Maps data coordinates onto the plot area of a chart of `width` x `height` pixels."""

    def __init__(self, width, height, x_range, y_range):
        self.width, self.height = width, height
        self.x0, self.x1 = MARGIN["left"], width - MARGIN["right"]
        self.y0, self.y1 = height - MARGIN["bottom"], MARGIN["top"]
        self.xr, self.yr = x_range, y_range

    def x(self, v: float) -> float:
        lo, hi = self.xr
        return self.x0 + (v - lo) / ((hi - lo) or 1.0) * (self.x1 - self.x0)

    def y(self, v: float) -> float:
        lo, hi = self.yr
        return self.y0 - (v - lo) / ((hi - lo) or 1.0) * (self.y0 - self.y1)

    def axes(self, title: str, x_label: str, y_label: str, x_ticks=True) -> list[str]:
        out = [
            f'<rect x="{self.x0}" y="{self.y1}" width="{self.x1 - self.x0}" '
            f'height="{self.y0 - self.y1}" fill="none" stroke="#999"/>',
            _text(self.width / 2, 16, title, 12, font_weight="bold"),
            _text(self.width / 2, self.height - 6, x_label, 11),
            _text(
                12,
                (self.y0 + self.y1) / 2,
                y_label,
                11,
                transform=f"rotate(-90 12 {(self.y0 + self.y1) / 2:.1f})",
            ),
        ]
        for t in _ticks(*self.yr):
            out.append(_text(self.x0 - 4, self.y(t) + 4, fmt(t), 10, "end"))
        for t in _ticks(*self.xr) if x_ticks else []:
            out.append(_text(self.x(t), self.y0 + 14, fmt(t), 10))
        if self.yr[0] < 0 < self.yr[1]:
            out.append(
                f'<line x1="{self.x0}" x2="{self.x1}" y1="{self.y(0):.1f}" y2="{self.y(0):.1f}" '
                'stroke="#bbb" stroke-dasharray="3 3"/>'
            )
        return out


def _range(values: list[np.ndarray], pad: float = 0.05) -> tuple[float, float]:
    finite = np.concatenate([v[np.isfinite(v)] for v in values]) if values else np.zeros(0)
    if not finite.size:
        return (0.0, 1.0)
    lo, hi = float(finite.min()), float(finite.max())
    span = (hi - lo) or (abs(hi) or 1.0)
    return (lo - pad * span, hi + pad * span)


def line_chart(
    series: list[tuple[str, np.ndarray, np.ndarray]],
    title: str,
    x_label: str,
    y_label: str,
    width: int = 520,
    height: int = 240,
    references: tuple[str, ...] = (),
) -> str:
    """Lines of y against x, one per named series, with a legend.

    Args:
        series: `(name, x [n], y [n])` per line; non-finite y values break the line.
        title, x_label, y_label: chart texts.
        references: names of series drawn first, dashed and without markers (reference
            levels), so data lines stay visible where they coincide.
    """
    xs = [np.asarray(x, np.float64) for _, x, _ in series]
    ys = [np.asarray(y, np.float64) for _, _, y in series]
    frame = _Frame(width, height, _range(xs, 0.0), _range(ys))
    body, legend_x = frame.axes(title, x_label, y_label), frame.x0
    order = sorted(range(len(series)), key=lambda i: series[i][0] not in references)
    for i in order:
        name, colour = series[i][0], PALETTE[i % len(PALETTE)]
        reference = name in references
        finite = [(frame.x(a), frame.y(b)) for a, b in zip(xs[i], ys[i], strict=True)
                  if math.isfinite(b)]  # fmt: skip
        points = " ".join(f"{a:.1f},{b:.1f}" for a, b in finite)
        dash = ' stroke-dasharray="6 4"' if reference else ""
        body.append(
            f'<polyline class="series" points="{points}" fill="none" stroke="{colour}" '
            f'stroke-width="1.6"{dash}><title>{escape(name)}</title></polyline>'
        )
        if not reference and len(finite) <= 60:  # markers where points are few enough to see
            body += [
                f'<circle cx="{a:.1f}" cy="{b:.1f}" r="2.5" fill="{colour}"/>' for a, b in finite
            ]
        body.append(f'<rect x="{legend_x}" y="22" width="10" height="10" fill="{colour}"/>')
        body.append(_text(legend_x + 14, 31, name, 10, "start"))
        legend_x += 26 + 6 * len(name)
    return _svg(width, height, body, title)


def bar_chart(
    counts: np.ndarray,
    labels: list[str],
    title: str,
    x_label: str,
    y_label: str = "rows",
    width: int = 520,
    height: int = 220,
) -> str:
    """Vertical bars, one per bin (a histogram whose bins may be uneven, labelled by `labels`).

    Args:
        counts: `[n_bins]` bar heights.
        labels: `n_bins` bin labels, drawn under the bars and in each bar's tooltip.
    """
    counts = np.asarray(counts, np.float64)
    frame = _Frame(
        width, height, (0.0, float(len(counts))), (0.0, 1.05 * float(counts.max(initial=0)) or 1.0)
    )
    body = frame.axes(title, x_label, y_label, x_ticks=False)
    bar_w = (frame.x1 - frame.x0) / max(len(counts), 1)
    step = max(1, math.ceil(len(counts) / 10))  # at most ~10 labels under the axis
    for i, (count, label) in enumerate(zip(counts, labels, strict=True)):
        x, y = frame.x(i), frame.y(count)
        body.append(
            f'<rect class="bar" x="{x + 1:.1f}" y="{y:.1f}" width="{max(bar_w - 2, 1):.1f}" '
            f'height="{frame.y0 - y:.1f}" fill="#4c78a8"><title>{escape(label)}: '
            f"{fmt(count)}</title></rect>"
        )
        if i % step == 0:
            body.append(_text(x + bar_w / 2, frame.y0 + 14, label, 9))
    return _svg(width, height, body, title)


def heatmap(
    matrix: np.ndarray,
    row_labels: list[str],
    col_labels: list[str],
    title: str,
    cell: int = 18,
) -> str:
    """A diverging heatmap (red negative, green positive), scaled by the largest |value|.

    Args:
        matrix: `[rows, cols]` values; NaN cells are drawn grey.
        row_labels, col_labels: one label per row / column.
    """
    matrix = np.asarray(matrix, np.float64)
    scale = float(np.nanmax(np.abs(matrix))) if np.isfinite(matrix).any() else 1.0
    left, top = 70, 30
    width, height = left + cell * matrix.shape[1] + 10, top + cell * matrix.shape[0] + 30
    body = [_text(width / 2, 16, f"{title} (colour scale ±{fmt(scale)})", 12, font_weight="bold")]
    for r, label in enumerate(row_labels):
        body.append(_text(left - 4, top + cell * r + cell * 0.7, label, 10, "end"))
        for c in range(matrix.shape[1]):
            v = matrix[r, c]
            fill = diverging_colour(v / (scale or 1.0)) if math.isfinite(v) else "#ddd"
            body.append(
                f'<rect class="cell" x="{left + cell * c}" y="{top + cell * r}" width="{cell}" '
                f'height="{cell}" fill="{fill}"><title>{escape(label)}, '
                f"{escape(col_labels[c])}: {fmt(v)}</title></rect>"
            )
    for c in range(0, matrix.shape[1], max(1, matrix.shape[1] // 10)):
        body.append(_text(left + cell * c + cell / 2, height - 12, col_labels[c], 9))
    return _svg(width, height, body, title)


def letter_colour(letter: str, alphabet: str) -> str:
    """Colour of a letter in a logo: DNA by base, protein by chemistry."""
    if set(alphabet) <= set("ACGTU"):
        return DNA_COLOURS.get(letter, "#555")
    return next((c for group, c in _PROTEIN_GROUPS.items() if letter in group), "#7b3294")


def information_content(pwm: np.ndarray) -> np.ndarray:
    """Bits per column: `log2(A) - H(column)`.

    Args:
        pwm: `[width, alphabet]` letter probabilities (rows are renormalised).

    Returns:
        `[width]` information content in bits.
    """
    p = np.clip(np.asarray(pwm, np.float64), 0.0, None)
    p = p / np.maximum(p.sum(axis=1, keepdims=True), 1e-12)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.nansum(np.where(p > 0, p * np.log2(p), 0.0), axis=1)
    return np.log2(p.shape[1]) - entropy


def sequence_logo(pwm: np.ndarray, alphabet: str, title: str, col_width: int = 22) -> str:
    """A sequence logo: per column, letters stacked by probability × information content.

    Letters are SVG `<text>` stretched with `textLength` and a vertical scale, so no font file
    is needed (glyph heights follow the system's sans-serif cap height, ~0.72 em).

    Args:
        pwm: `[width, len(alphabet)]` letter probabilities.
        alphabet: the letters of the columns of `pwm`, in order.
    """
    pwm = np.asarray(pwm, np.float64)
    if pwm.ndim != 2 or pwm.shape[1] != len(alphabet):
        raise ValueError(f"pwm shape {pwm.shape} does not match alphabet {alphabet!r}")
    ic = information_content(pwm)
    max_bits = math.log2(len(alphabet))
    left, top, plot_h = 34, 22, 90
    width, height = left + col_width * len(pwm) + 8, top + plot_h + 22
    body = [_text(width / 2, 14, title, 11, font_weight="bold")]
    for bits in range(int(max_bits) + 1):
        y = top + plot_h * (1 - bits / max_bits)
        body.append(_text(left - 4, y + 4, str(bits), 9, "end"))
    body.append(
        _text(10, top + plot_h / 2, "bits", 9, transform=f"rotate(-90 10 {top + plot_h / 2})")
    )
    for col, (probs, bits) in enumerate(zip(pwm / pwm.sum(1, keepdims=True), ic, strict=True)):
        x, y = left + col * col_width, top + plot_h
        for i in np.argsort(probs):  # smallest at the bottom, most likely letter on top
            h = plot_h * probs[i] * bits / max_bits
            if h < 0.5:
                continue
            body.append(_logo_letter(alphabet[i], x, y, col_width, h, alphabet))
            y -= h
        body.append(_text(x + col_width / 2, top + plot_h + 14, str(col + 1), 9))
    return _svg(width, height, body, title, "logo")


def _logo_letter(letter: str, x: float, bottom: float, w: float, h: float, alphabet: str) -> str:
    """One glyph whose cap height is scaled to `h` pixels, bottom at `bottom`."""
    font, cap = 100, 0.72
    sy = h / (font * cap)
    return (
        f'<text class="letter" transform="translate({x + 1:.2f} {bottom:.2f}) scale(1 {sy:.4f})" '
        f'font-size="{font}" font-family="sans-serif" font-weight="bold" '
        f'textLength="{w - 2:.1f}" lengthAdjust="spacingAndGlyphs" '
        f'fill="{letter_colour(letter, alphabet)}">{escape(letter)}</text>'
    )
