"""Architecture drawings as SVG text: the macro chain and each cell as a 4-node graph.

Pure string generation (no graphviz, no plotting library), deterministic: the same architecture
always gives byte-identical SVG, so drawings can be diffed, cached and stored as trial artifacts.

In a cell panel the nodes 0 (input) .. 3 (output) sit on a line. Forward edges are solid arcs
above it, backward (temporal feedback, SNASNet-Bw) edges dashed arcs below it, labelled with
their op and ``t+1``; ``zero`` edges are left out. A node drawn with a thick yellow ring has a
LIF population: its conv edges read its spikes, while ``skip`` and ``avgpool3x3`` edges carry the
node's analog value (see :mod:`hasnas_optuna.network`).

Example:
    >>> from hasnas_optuna.architecture import Architecture, Cell
    >>> cell = Cell.from_matrix("0302 0030 3003 0000")
    >>> arch = Architecture(input_shape=(1, 8, 8), num_classes=10, cell_a=cell, cell_b=cell, channels=8)
    >>> svg = architecture_svg(arch)
    >>> svg.startswith("<svg") and svg == architecture_svg(arch) and "backward edge 2 to 0: conv3x3" in svg
    True
"""

from __future__ import annotations

from html import escape

from hasnas_optuna.architecture import EDGES, KERNELS, Architecture, Cell

__all__ = ["OP_COLORS", "architecture_svg", "cell_svg"]

OP_COLORS = {"conv3x3": "#1f5fa8", "conv1x1": "#16a0b5", "skip": "#6b6b6b", "avgpool3x3": "#d9730d"}
"""Stroke colour of each non-zero edge operation."""
_BACKWARD_COLOR = "#b0306f"
_FONT = "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\""
_WIDTH = 980
_CELL_HEIGHT = 250


def _num(value: float) -> str:
    """Coordinates with at most one decimal (stable text across platforms)."""
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _text(x: float, y: float, body: str, *, size: int = 12, anchor: str = "middle", weight: str = "normal",
          fill: str = "#222", extra: str = "") -> str:
    bold = ' font-weight="bold"' if weight == "bold" else ""
    return (f'<text x="{_num(x)}" y="{_num(y)}" font-size="{size}" text-anchor="{anchor}"{bold} '
            f'fill="{fill}"{extra}>{escape(body)}</text>')


def _defs() -> str:
    markers = []
    for name, color in [*OP_COLORS.items(), ("chain", "#444"), ("backward", _BACKWARD_COLOR)]:
        markers.append(
            f'<marker id="arrow-{name}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
            f'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{color}"/></marker>'
        )
    return "<defs>" + "".join(markers) + "</defs>"


def _unit(dx: float, dy: float) -> tuple[float, float]:
    length = (dx * dx + dy * dy) ** 0.5 or 1.0
    return dx / length, dy / length


def _cell_body(cell: Cell, x0: float, y0: float, width: float, *, title: str, channels: int | None,
               size: tuple[int, int] | None) -> list[str]:
    """The SVG elements of one cell panel with its top-left corner at ``(x0, y0)``."""
    out = [f'<rect x="{_num(x0)}" y="{_num(y0)}" width="{_num(width)}" height="{_CELL_HEIGHT}" rx="8" '
           'fill="#fbfbfd" stroke="#c9c9d6"/>']
    shape = "" if channels is None or size is None else f": {channels} channels at {size[0]}x{size[1]}"
    out.append(_text(x0 + 12, y0 + 20, title + shape, anchor="start", weight="bold", size=13))
    radius = 15.0
    line_y = y0 + 125.0
    xs = [x0 + 60 + i * (width - 120) / 3 for i in range(4)]
    spiking = {s for (s, _), op in zip(EDGES, cell.edges, strict=True) if op in KERNELS}
    spiking |= {s for s, _, op in cell.backward if op in KERNELS}

    def arc(src: int, dst: int, op: str, backward: bool) -> None:
        span = abs(dst - src)
        sign = 1.0 if backward else -1.0
        height = (20.0 * span + 2.0) if backward else (0.0 if span == 1 else 38.0 * (span - 1) + 4.0)
        color = _BACKWARD_COLOR if backward else OP_COLORS[op]
        xa, xb = xs[src], xs[dst]
        mid = (xa + xb) / 2
        cx, cy = mid, line_y + sign * 2 * height
        ux, uy = _unit(cx - xa, cy - line_y)
        vx, vy = _unit(cx - xb, cy - line_y)
        sx, sy = xa + radius * ux, line_y + radius * uy
        ex, ey = xb + (radius + 1) * vx, line_y + (radius + 1) * vy
        label = f"{op} (t+1)" if backward else op
        dash = ' stroke-dasharray="6 4"' if backward else ""
        marker = "backward" if backward else op
        name = f"{'backward' if backward else 'forward'} edge {src} to {dst}: {op}"
        out.append(
            f'<path d="M{_num(sx)},{_num(sy)} Q{_num(cx)},{_num(cy)} {_num(ex)},{_num(ey)}" fill="none" '
            f'stroke="{color}" stroke-width="2"{dash} marker-end="url(#arrow-{marker})"><title>{escape(name)}</title>'
            "</path>"
        )
        label_y = line_y + sign * height + (14 if backward else -6)
        out.append(_text(mid, label_y, label, size=11, fill=color,
                         extra=' paint-order="stroke" stroke="#fbfbfd" stroke-width="4"'))

    for (src, dst), op in zip(EDGES, cell.edges, strict=True):
        if op != "zero":
            arc(src, dst, op, backward=False)
    for src, dst, op in cell.backward:
        arc(src, dst, op, backward=True)
    names = {0: "in", 3: "out"}
    for node, x in enumerate(xs):
        ring = ' stroke="#e0b000" stroke-width="4"' if node in spiking else ' stroke="#555" stroke-width="1.5"'
        tip = f"node {node}" + (" (LIF: its conv edges read spikes)" if node in spiking else "")
        out.append(f'<circle cx="{_num(x)}" cy="{_num(line_y)}" r="{_num(radius)}" fill="#ffffff"{ring}>'
                   f"<title>{escape(tip)}</title></circle>")
        out.append(_text(x, line_y + 4, str(node), size=13, weight="bold"))
        if node in names:
            out.append(_text(x, line_y + radius + 14 if not cell.backward else line_y - radius - 6,
                             names[node], size=10, fill="#666"))
    summary = cell.summary()
    if len(summary) > 95:
        summary = summary[:92] + "..."
    out.append(_text(x0 + 12, y0 + _CELL_HEIGHT - 10, summary, anchor="start", size=10, fill="#555"))
    return out


def _legend(y: float) -> list[str]:
    out = []
    x = 20.0
    for op, color in OP_COLORS.items():
        out.append(f'<line x1="{_num(x)}" y1="{_num(y)}" x2="{_num(x + 26)}" y2="{_num(y)}" stroke="{color}" '
                   'stroke-width="2"/>')
        out.append(_text(x + 32, y + 4, op, anchor="start", size=11))
        x += 112
    out.append(f'<line x1="{_num(x)}" y1="{_num(y)}" x2="{_num(x + 26)}" y2="{_num(y)}" stroke="{_BACKWARD_COLOR}" '
               'stroke-width="2" stroke-dasharray="6 4"/>')
    out.append(_text(x + 32, y + 4, "backward edge (feeds the next timestep)", anchor="start", size=11))
    x += 290
    out.append(f'<circle cx="{_num(x + 8)}" cy="{_num(y)}" r="7" fill="#fff" stroke="#e0b000" stroke-width="3"/>')
    out.append(_text(x + 22, y + 4, "LIF node; zero edges not drawn", anchor="start", size=11))
    return out


def _chain(arch: Architecture) -> list[tuple[str, str, str]]:
    """The macro chain as (name, detail, fill colour) boxes."""
    c, h, w = arch.input_shape
    width = arch.channels
    boxes = [
        ("input", f"{c}x{h}x{w}, {arch.encoding}", "#eeeeee"),
        ("stem", f"conv3x3 {c}->{width}", "#dce8f7"),
        ("Cell A", f"{width} ch, {h}x{w}", "#fff2cc"),
        ("reduce", f"LIF, conv3x3 {width}->{2 * width}, pool 2", "#dce8f7"),
        ("Cell B", f"{2 * width} ch, {h // 2}x{w // 2}", "#fff2cc"),
        ("head", f"pool 2, LIF, {2 * width}x{h // 4}x{w // 4}", "#eeeeee"),
    ]
    flat = 2 * width * (h // 4) * (w // 4)
    if arch.hidden_features:
        boxes.append(("fc_hidden", f"{flat}->{arch.hidden_features}, LIF", "#dce8f7"))
        flat = arch.hidden_features
    boxes.append(("fc_out", f"{flat}->{arch.num_classes}", "#dce8f7"))
    boxes.append(("readout", f"leaky integrator, mean of {arch.timesteps} steps", "#eeeeee"))
    return boxes


def architecture_svg(arch: Architecture, *, title: str | None = None) -> str:
    """Draw ``arch``: the macro chain on top, Cell A and Cell B below, and a legend.

    Args:
        arch: The architecture to draw.
        title: First line of the drawing (default: the network name, weights and neuron settings).

    Example:
        >>> from hasnas_optuna.architecture import Architecture, Cell
        >>> cell = Cell(("conv3x3", "zero", "zero", "skip", "avgpool3x3", "zero"))
        >>> arch = Architecture(input_shape=(3, 32, 32), num_classes=10, cell_a=cell, cell_b=cell)
        >>> svg = architecture_svg(arch, title="demo")
        >>> svg.count("<circle"), "forward edge 1 to 3: avgpool3x3" in svg
        (9, True)
    """
    network = arch.to_network()
    if title is None:
        title = (f"{network.name}: {network.params:,} weights, T={arch.timesteps}, LIF beta={arch.beta:.3g} "
                 f"threshold={arch.threshold:.3g}, surrogate {arch.surrogate}({arch.surrogate_slope:.3g})")
    boxes = _chain(arch)
    margin, gap = 16.0, 22.0
    box_w = (_WIDTH - 2 * margin - gap * (len(boxes) - 1)) / len(boxes)
    box_y, box_h = 40.0, 72.0
    cells_y = box_y + box_h + 30
    legend_y = cells_y + _CELL_HEIGHT + 24
    height = legend_y + 18
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{_num(height)}" '
        f'viewBox="0 0 {_WIDTH} {_num(height)}" {_FONT}>',
        f"<title>{escape(title)}</title>",
        _defs(),
        f'<rect width="{_WIDTH}" height="{_num(height)}" fill="#ffffff"/>',
        _text(margin, 24, title, anchor="start", size=14, weight="bold"),
    ]
    for i, (name, detail, fill) in enumerate(boxes):
        x = margin + i * (box_w + gap)
        out.append(f'<rect x="{_num(x)}" y="{_num(box_y)}" width="{_num(box_w)}" height="{_num(box_h)}" rx="6" '
                   f'fill="{fill}" stroke="#888"/>')
        out.append(_text(x + box_w / 2, box_y + 22, name, size=12, weight="bold"))
        for k, line in enumerate(detail.split(", ")):
            out.append(_text(x + box_w / 2, box_y + 36 + 12 * k, line, size=9, fill="#333"))
        if i:
            xa = x - gap + 2
            out.append(f'<line x1="{_num(xa)}" y1="{_num(box_y + box_h / 2)}" x2="{_num(x - 2)}" '
                       f'y2="{_num(box_y + box_h / 2)}" stroke="#444" stroke-width="1.5" '
                       'marker-end="url(#arrow-chain)"/>')
    panel_w = (_WIDTH - 3 * margin) / 2
    _, h, w = arch.input_shape
    out += _cell_body(arch.cell_a, margin, cells_y, panel_w, title="Cell A", channels=arch.channels, size=(h, w))
    out += _cell_body(arch.cell_b, 2 * margin + panel_w, cells_y, panel_w, title="Cell B",
                      channels=2 * arch.channels, size=(h // 2, w // 2))
    out += _legend(legend_y)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def cell_svg(cell: Cell, *, title: str = "cell") -> str:
    """Draw one cell on its own (same conventions as in :func:`architecture_svg`).

    Example:
        >>> svg = cell_svg(Cell.from_matrix("0302 0030 3003 0000"), title="SNASNet CIFAR-100 cell")
        >>> svg.count('stroke-dasharray="6 4"'), svg.count("<circle")
        (1, 4)
    """
    width = 480.0
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_num(width)}" height="{_CELL_HEIGHT + 8}" '
        f'viewBox="0 0 {_num(width)} {_CELL_HEIGHT + 8}" {_FONT}>',
        f"<title>{escape(title)}</title>",
        _defs(),
    ]
    out += _cell_body(cell, 4, 4, width - 8, title=title, channels=None, size=None)
    out.append("</svg>")
    return "\n".join(out) + "\n"
