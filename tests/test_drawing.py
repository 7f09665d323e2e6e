"""Architecture drawings: well-formed, deterministic SVG with every edge of both cells."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from hasnas_optuna.architecture import EDGES, KERNELS, Architecture, Cell
from hasnas_optuna.drawing import OP_COLORS, architecture_svg, cell_svg

SVG = "{http://www.w3.org/2000/svg}"
CELL_A = Cell(("conv3x3", "zero", "conv3x3", "conv1x1", "zero", "conv3x3"), backward=((2, 0, "conv3x3"),))
CELL_B = Cell(("conv1x1", "skip", "avgpool3x3", "conv3x3", "zero", "conv1x1"), backward=((3, 1, "skip"),))


def arch(**changes: object) -> Architecture:
    values: dict[str, object] = dict(input_shape=(1, 8, 8), num_classes=10, cell_a=CELL_A, cell_b=CELL_B, channels=8)
    values.update(changes)
    return Architecture(**values)  # type: ignore[arg-type]


def edges_drawn(svg: str) -> list[tuple[str, str]]:
    """(edge title, stroke) of every drawn edge."""
    root = ET.fromstring(svg)
    out = []
    for path in root.iter(SVG + "path"):
        title = path.find(SVG + "title")
        if title is not None:
            out.append((title.text or "", path.get("stroke", "")))
    return out


def test_every_non_zero_edge_is_drawn_once_with_its_op_and_direction() -> None:
    svg = architecture_svg(arch())
    drawn = edges_drawn(svg)
    expected = []
    for cell in (CELL_A, CELL_B):
        expected += [f"forward edge {s} to {d}: {op}" for (s, d), op in zip(EDGES, cell.edges, strict=True)
                     if op != "zero"]
        expected += [f"backward edge {s} to {d}: {op}" for s, d, op in cell.backward]
    assert sorted(title for title, _ in drawn) == sorted(expected)
    for title, stroke in drawn:
        op = title.rsplit(": ", 1)[1]
        assert stroke == (OP_COLORS[op] if title.startswith("forward") else "#b0306f")
    root = ET.fromstring(svg)
    dashed = [p for p in root.iter(SVG + "path") if p.get("stroke-dasharray") and p.find(SVG + "title") is not None]
    assert len(dashed) == 2  # one backward edge per cell, dashed
    labels = [t.text for t in root.iter(SVG + "text")]
    assert "conv3x3 (t+1)" in labels and "skip (t+1)" in labels


def test_lif_nodes_are_the_sources_of_conv_edges() -> None:
    svg = cell_svg(CELL_B, title="B")
    root = ET.fromstring(svg)
    rings = {c.find(SVG + "title").text.split()[1] for c in root.iter(SVG + "circle")  # type: ignore[union-attr]
             if c.get("stroke") == "#e0b000"}
    conv_sources = {str(s) for (s, _), op in zip(EDGES, CELL_B.edges, strict=True) if op in KERNELS}
    assert rings == conv_sources == {"0", "2"}


def test_macro_chain_follows_the_architecture() -> None:
    plain = architecture_svg(arch())
    hidden = architecture_svg(arch(hidden_features=32, channels=4, timesteps=6))
    text = lambda svg: [t.text for t in ET.fromstring(svg).iter(SVG + "text")]  # noqa: E731
    assert "fc_hidden" not in text(plain) and "fc_hidden" in text(hidden)
    assert "32->32, LIF" not in text(hidden) and "32->32" in text(hidden) and "32->10" in text(hidden)
    assert "conv3x3 1->8" in text(plain) and "8 ch" in text(plain) and "16 ch" in text(plain)
    assert "mean of 6 steps" in text(hidden)


def test_output_is_deterministic_and_escaped() -> None:
    a = architecture_svg(arch(), title="a <b> & c")
    assert a == architecture_svg(arch(), title="a <b> & c")
    assert "a &lt;b&gt; &amp; c" in a
    assert a != architecture_svg(arch(cell_b=CELL_A), title="a <b> & c")
    ET.fromstring(a)  # well-formed XML


@pytest.mark.parametrize("matrix", ["0004 0000 0000 0000", "0111 0011 0001 0000", "0302 0030 3003 0000"])
def test_any_valid_cell_draws(matrix: str) -> None:
    cell = Cell.from_matrix(matrix)
    svg = cell_svg(cell)
    assert len(edges_drawn(svg)) == sum(op != "zero" for op in cell.edges) + len(cell.backward)
