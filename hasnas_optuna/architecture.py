"""The searched network as a value: two SNASNet-style cells inside a fixed macro-architecture.

An :class:`Architecture` is frozen, hashable and JSON round-trippable, and it is the one source
of truth for the network: :meth:`Architecture.to_network` derives the layer list the cost model
reads, and the torch builder must build exactly that list.

Macro-architecture (paper.md 3.1/3.2), for an input of ``c x H x W`` and base width ``C``; every
conv has stride 1 and ``kernel_size // 2`` padding, so it keeps its input size::

    stem       conv3x3 c -> C                    at H x W        (layer "stem")
    Cell A     C channels                        at H x W        (layers "cell_a.*")
    reduce     conv3x3 C -> 2C, then 2x2 avgpool at H x W        (layer "reduce", pool_after=2)
    Cell B     2C channels                       at H/2 x W/2    (layers "cell_b.*")
    pool       2x2 avgpool of Cell B's output node, giving H/4 x W/4 (floor division)
    classifier flatten 2C*(H/4)*(W/4) -> fc_hidden (if hidden_features > 0) -> fc_out (num_classes)

Inside a cell (SNASNet, paper.md 3.1): node 0 is the cell input, node 3 its output, and a node's
value is the sum of its incoming edges, ``x1 = e0(x0)``, ``x2 = e1(x0) + e2(x1)``,
``x3 = e3(x0) + e4(x1) + e5(x2)``. ``conv1x1``/``conv3x3`` edges are C -> C convolutions (one
crossbar-mapped layer each); ``zero``, ``skip`` and ``avgpool3x3`` (stride 1, padding 1) carry no
weights. A backward edge ``(src, dst, op)`` (SNASNet-Bw) applies ``op`` to node ``src``'s value at
step t and adds the result to node ``dst``'s input at step t + 1; its op is any non-zero op, as in
SNASNet-Bw, and a node pair holds either a forward or a backward edge, never both.

Where pooling sits in the layer list: ``pool_after`` says that a layer's output is pooled before
anything else reads it. That is exact for ``reduce``. The 2x2 pool after Cell B acts on Cell B's
output node, a sum; average pooling is linear, so pooling the sum equals pooling each incoming
edge, and every weight-carrying edge into Cell B's node 3 gets ``pool_after=2`` (edges without
weights are pooled too, but are not layers). Cell B's backward edges out of node 3 read the
unpooled node (their layers have ``pool_after=1``).

Layer order (deterministic and topological): stem; Cell A forward edges in edge order e0..e5
(grouped by destination node 1, 2, 3); Cell A backward edges in SNASNet's update order (by
destination, then source), since they run after node 3 and feed the next step; reduce; Cell B
likewise; fc_hidden; fc_out. Names: ``stem``, ``cell_a.e1.conv3x3``, ``cell_a.b2to0.conv1x1``,
``reduce``, ``cell_b.e5.conv1x1``, ``fc_hidden``, ``fc_out``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hasnas_optuna._errors import ConfigError, parse_json
from hasnas_optuna.cim import ENCODINGS, Layer, Network

__all__ = ["EDGES", "OPS", "SURROGATES", "Architecture", "Cell"]

OPS = ("zero", "skip", "conv1x1", "conv3x3", "avgpool3x3")
"""Edge operations, in SNASNet's code order (code 0..4 in its connection matrix)."""
EDGES = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
"""The six forward edges (source, destination) of a cell, in the fixed order of ``Cell.edges``."""
SURROGATES = ("atan", "fast_sigmoid", "sigmoid")
"""Surrogate gradients of the spike function (snntorch names)."""
KERNELS = {"conv1x1": 1, "conv3x3": 3}
"""Weight-carrying operations and their kernel size."""
NONZERO_OPS = OPS[1:]
MIN_INPUT_SIDE = 4
"""Smallest input height/width: two 2x2 poolings must leave at least one pixel."""


@dataclass(frozen=True, slots=True)
class Cell:
    """A 4-node cell: six forward edge ops (order :data:`EDGES`) and optional backward edges.

    Construction checks the form (op names, edge pairs); :meth:`is_valid` checks the topology
    (SNASNet's sanity rules), and :meth:`repaired` returns the nearest valid cell.

    Args:
        edges: Op of each forward edge 0->1, 0->2, 1->2, 0->3, 1->3, 2->3 (names from :data:`OPS`).
        backward: ``(src, dst, op)`` triples with ``src > dst`` and a non-zero ``op``: node
            ``src``'s value at step t, through ``op``, feeds node ``dst`` at step t + 1. Stored
            sorted by ``(dst, src)``.

    Example:
        >>> cell = Cell.from_matrix("0302 0030 3003 0000")  # SNASNet's released CIFAR100 cell
        >>> cell.edges
        ('conv3x3', 'zero', 'conv3x3', 'conv1x1', 'zero', 'conv3x3')
        >>> cell.backward
        ((2, 0, 'conv3x3'),)
        >>> cell.is_valid(), cell.to_matrix()
        (True, '0302 0030 3003 0000')
        >>> Cell(("conv3x3", "zero", "zero", "skip", "zero", "zero")).summary()
        '0->1 conv3x3, 0->3 skip; node 1 dead'
    """

    edges: tuple[str, ...]
    backward: tuple[tuple[int, int, str], ...] = ()

    def __post_init__(self) -> None:
        edges = self.edges
        if isinstance(edges, str) or not isinstance(edges, Sequence) or len(edges) != len(EDGES):
            raise ConfigError(
                f"edges={edges!r} must be a list of {len(EDGES)} ops, one per edge "
                f"{', '.join(f'{s}->{d}' for s, d in EDGES)}"
            )
        for i, op in enumerate(edges):
            if op not in OPS:
                raise ConfigError(f"edges[{i}]={op!r} is not an operation; use one of {', '.join(OPS)}")
        object.__setattr__(self, "edges", tuple(edges))
        object.__setattr__(self, "backward", _check_backward(self.backward, self.edges))

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def from_matrix(cls, matrix: str | Sequence[Sequence[int]]) -> Cell:
        """Read SNASNet's 4x4 connection matrix: ``"0302 0030 3003 0000"`` or nested lists.

        Entry ``[r][c]`` is an op code (index into :data:`OPS`); upper triangle forward, lower
        triangle backward edges.
        """
        rows: list[list[int]]
        if isinstance(matrix, str):
            parts = matrix.split()
            if len(parts) != 4 or any(len(p) != 4 or not p.isdigit() for p in parts):
                raise ConfigError(
                    f"cell matrix {matrix!r} must be four rows of four op codes, e.g. '0302 0030 3003 0000'"
                )
            rows = [[int(ch) for ch in p] for p in parts]
        else:
            rows = [list(r) for r in matrix]
            if len(rows) != 4 or any(len(r) != 4 for r in rows):
                raise ConfigError(f"cell matrix {matrix!r} must be 4x4")
        for r, row in enumerate(rows):
            for c, code in enumerate(row):
                if isinstance(code, bool) or not isinstance(code, int) or not 0 <= code < len(OPS):
                    raise ConfigError(
                        f"cell matrix entry [{r}][{c}]={code!r} is not an op code; use 0..{len(OPS) - 1} "
                        f"({', '.join(f'{i}={op}' for i, op in enumerate(OPS))})"
                    )
                if r == c and code:
                    raise ConfigError(
                        f"cell matrix entry [{r}][{c}]={code} must be 0: a node has no self-edge"
                    )
        edges = tuple(OPS[rows[s][d]] for s, d in EDGES)
        backward = tuple((d, s, OPS[rows[d][s]]) for s, d in EDGES if rows[d][s])
        return cls(edges, backward)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | str, *, where: str = "cell") -> Cell:
        """Read ``{"edges": [...], "backward": [[src, dst, op], ...]}`` or a matrix string."""
        if isinstance(data, str):
            return cls.from_matrix(data)
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where} must be an object with 'edges' (and 'backward'), got {data!r}")
        unknown = sorted(set(data) - {"edges", "backward"})
        if unknown:
            raise ConfigError(f"{where} has unknown field {unknown[0]!r}; allowed fields: backward, edges")
        if "edges" not in data:
            raise ConfigError(f"{where}.edges is missing")
        edges, backward = data["edges"], data.get("backward", ())
        if isinstance(edges, list):
            edges = tuple(edges)
        if isinstance(backward, list):
            backward = tuple(tuple(b) if isinstance(b, list) else b for b in backward)
        try:
            return cls(edges, backward)
        except ConfigError as exc:
            raise ConfigError(f"{where}.{exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """The cell as plain JSON values; :meth:`from_dict` reads it back."""
        return {"edges": list(self.edges), "backward": [list(b) for b in self.backward]}

    def to_matrix(self) -> str:
        """SNASNet's connection matrix as four rows of op codes."""
        rows = [[0] * 4 for _ in range(4)]
        for (s, d), op in zip(EDGES, self.edges, strict=True):
            rows[s][d] = OPS.index(op)
        for s, d, op in self.backward:
            rows[s][d] = OPS.index(op)
        return " ".join("".join(map(str, row)) for row in rows)

    # -- topology -------------------------------------------------------------------------------

    def _arcs(self) -> list[tuple[int, int, str]]:
        """Every non-zero edge as (from, to, label), forward ones first."""
        pairs = zip(EDGES, self.edges, strict=True)
        arcs = [(s, d, f"{s}->{d} {op}") for (s, d), op in pairs if op != "zero"]
        return arcs + [(s, d, f"backward {s}->{d} {op}") for s, d, op in self.backward]

    def _reach(self) -> tuple[set[int], set[int]]:
        """Nodes reachable from node 0, and nodes that reach node 3, over all non-zero edges."""
        arcs = self._arcs()
        forward, back = {0}, {3}
        changed = True
        while changed:
            changed = False
            for s, d, _ in arcs:
                if s in forward and d not in forward:
                    forward.add(d)
                    changed = True
                if d in back and s not in back:
                    back.add(s)
                    changed = True
        return forward, back

    def live_nodes(self) -> frozenset[int]:
        """Nodes on some path from node 0 to node 3 (backward edges count, delayed one step).

        Empty when node 3 is not reachable at all.
        """
        forward, back = self._reach()
        return frozenset(forward & back) if 3 in forward else frozenset()

    def problems(self) -> list[str]:
        """Why the cell is invalid (empty when valid), following SNASNet's sanity checks.

        A cell is valid when node 3 is reachable from node 0 through non-zero edges and no
        node is dead: every non-zero edge, forward or backward, lies on a path from node 0 to
        node 3 (SNASNet zeroes the rows and columns of intermediate nodes that do not reach the
        output or are not reached from the input; paper.md 9.2, rules 1-3).
        """
        forward, back = self._reach()
        if 3 not in forward:
            return ["no path of non-zero edges leads from node 0 (input) to node 3 (output)"]
        out = []
        for s, d, label in self._arcs():
            if s not in forward:
                out.append(f"edge {label} is dead: node {s} is never reached from the input")
            elif d not in back:
                out.append(f"edge {label} is dead: node {d} never reaches the output")
        return out

    def is_valid(self) -> bool:
        """True when :meth:`problems` finds nothing."""
        return not self.problems()

    def check(self, where: str = "cell") -> None:
        """Raise :class:`ConfigError` naming the first problem, if the cell is invalid."""
        problems = self.problems()
        if problems:
            raise ConfigError(
                f"{where} is not a valid cell: {problems[0]}; every non-zero edge must lie on a path "
                "from node 0 to node 3 (Cell.repaired() gives the nearest valid cell)"
            )

    def repaired(self, *, fallback_op: str = "skip") -> Cell:
        """The nearest valid cell: dead edges set to ``zero`` (backward ones dropped).

        This is SNASNet's own repair (zero every edge of a dead node); the removed edges carry
        no input-derived signal to the output. A cell with no input-to-output path at all
        becomes the cell with the single edge 0->3 ``fallback_op``. A valid cell is returned unchanged.

        Example:
            >>> Cell(("conv3x3", "zero", "zero", "skip", "zero", "zero")).repaired().edges
            ('zero', 'zero', 'zero', 'skip', 'zero', 'zero')
            >>> Cell(("zero",) * 6).repaired(fallback_op="conv1x1").summary()
            '0->3 conv1x1'
        """
        if fallback_op not in NONZERO_OPS:
            raise ConfigError(
                f"fallback_op={fallback_op!r} is not allowed; use one of {', '.join(NONZERO_OPS)}"
            )
        live = self.live_nodes()
        if not live:
            edges = ["zero"] * len(EDGES)
            edges[EDGES.index((0, 3))] = fallback_op
            return Cell(tuple(edges))
        edges_out = tuple(
            op if s in live and d in live else "zero" for (s, d), op in zip(EDGES, self.edges, strict=True)
        )
        backward = tuple(b for b in self.backward if b[0] in live and b[1] in live)
        if edges_out == self.edges and backward == self.backward:
            return self
        return Cell(edges_out, backward)

    # -- description ----------------------------------------------------------------------------

    def summary(self) -> str:
        """One line: the non-zero edges, and what is wrong if the cell is invalid."""
        parts = [f"{s}->{d} {op}" for (s, d), op in zip(EDGES, self.edges, strict=True) if op != "zero"]
        parts += [f"back {s}->{d} {op}" for s, d, op in self.backward]
        text = ", ".join(parts) or "empty"
        live = self.live_nodes()
        if not live:
            return text + "; no input-output path"
        used = {n for s, d, _ in self._arcs() for n in (s, d)}
        dead = sorted(used - live)
        if not dead:
            return text
        return text + f"; node{'s' if len(dead) > 1 else ''} {', '.join(map(str, dead))} dead"

    def layers(self, prefix: str, *, channels: int, input_size: tuple[int, int], output_pool: int = 1
               ) -> list[Layer]:
        """The cell's weight-carrying edges as cost-model layers (see the module docstring)."""
        out = []
        for k, ((_, d), op) in enumerate(zip(EDGES, self.edges, strict=True)):
            if op in KERNELS:
                out.append(Layer.conv(
                    channels, channels, kernel_size=KERNELS[op], input_size=input_size,
                    padding=KERNELS[op] // 2, pool_after=output_pool if d == 3 else 1,
                    name=f"{prefix}.e{k}.{op}", bias=True,
                ))
        for s, d, op in self.backward:
            if op in KERNELS:
                out.append(Layer.conv(
                    channels, channels, kernel_size=KERNELS[op], input_size=input_size,
                    padding=KERNELS[op] // 2, name=f"{prefix}.b{s}to{d}.{op}", bias=True,
                ))
        return out


def _check_backward(raw: Any, edges: tuple[str, ...]) -> tuple[tuple[int, int, str], ...]:
    if isinstance(raw, (str, bytes)) or not isinstance(raw, Sequence):
        raise ConfigError(f"backward={raw!r} must be a list of (src, dst, op) triples")
    seen: set[tuple[int, int]] = set()
    out = []
    for i, item in enumerate(raw):
        if isinstance(item, (str, bytes)) or not isinstance(item, Sequence) or len(item) != 3:
            raise ConfigError(f"backward[{i}]={item!r} must be a (src, dst, op) triple")
        src, dst, op = item
        if any(isinstance(v, bool) or not isinstance(v, int) for v in (src, dst)) or not (
            0 <= dst < src <= 3
        ):
            raise ConfigError(
                f"backward[{i}]={tuple(item)!r}: src and dst must be nodes 0..3 with src > dst "
                "(a backward edge goes from a later node to an earlier one)"
            )
        if op not in NONZERO_OPS:
            raise ConfigError(
                f"backward[{i}] op={op!r} is not allowed; use one of {', '.join(NONZERO_OPS)} "
                "(leave a 'zero' backward edge out)"
            )
        if (src, dst) in seen:
            raise ConfigError(f"backward[{i}]: a second backward edge {src}->{dst}; give each pair once")
        seen.add((src, dst))
        forward_op = edges[EDGES.index((dst, src))]
        if forward_op != "zero":
            raise ConfigError(
                f"backward[{i}]={tuple(item)!r} shares its node pair with forward edge {dst}->{src} "
                f"{forward_op}; as in SNASNet-Bw a pair holds a forward or a backward edge, set that "
                "forward edge to 'zero'"
            )
        out.append((src, dst, op))
    return tuple(sorted(out, key=lambda b: (b[1], b[0])))


# ---------------------------------------------------------------------------------------------
# Architecture

_REQUIRED = ("input_shape", "num_classes", "cell_a", "cell_b")


@dataclass(frozen=True, slots=True, kw_only=True)
class Architecture:
    """One point of the search space: macro shape, two cells and the spiking-neuron settings.

    See the module docstring for the macro-architecture and the layer list it maps to.

    Args:
        input_shape: ``(channels, height, width)`` of one input sample; height, width >= 4.
        num_classes: Output classes (>= 2).
        cell_a: Cell at ``channels`` width, full resolution (must be valid).
        cell_b: Cell at ``2 * channels`` width, half resolution (must be valid).
        channels: Base width C.
        timesteps: Simulation timesteps T.
        encoding: Input encoding, one of ``direct``, ``rate``, ``latency``.
        beta: LIF membrane decay per step, in [0, 1].
        threshold: LIF firing threshold (> 0).
        surrogate: Surrogate gradient, one of :data:`SURROGATES`.
        surrogate_slope: Its sharpness (atan ``alpha``, sigmoid/fast_sigmoid ``slope``), > 0.
        hidden_features: Width of the hidden classifier layer; 0 for none.

    Example:
        >>> cell = Cell.from_matrix("0302 0030 3003 0000")
        >>> arch = Architecture(input_shape=(1, 8, 8), num_classes=10, cell_a=cell, cell_b=cell,
        ...                     channels=8, hidden_features=32)
        >>> Architecture.from_json(arch.to_json()) == arch
        True
        >>> net = arch.to_network()
        >>> [layer.name for layer in net.layers][:4]
        ['stem', 'cell_a.e0.conv3x3', 'cell_a.e2.conv3x3', 'cell_a.e3.conv1x1']
        >>> net.params, net.timesteps, net.encoding
        (15432, 4, 'direct')
    """

    input_shape: tuple[int, int, int]
    num_classes: int
    cell_a: Cell
    cell_b: Cell
    channels: int = 16
    timesteps: int = 4
    encoding: str = "direct"
    beta: float = 0.9
    threshold: float = 1.0
    surrogate: str = "atan"
    surrogate_slope: float = 2.0
    hidden_features: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", check_input_shape(self.input_shape))
        _check_int("num_classes", self.num_classes, 2)
        _check_int("channels", self.channels, 1)
        _check_int("timesteps", self.timesteps, 1)
        _check_int("hidden_features", self.hidden_features, 0)
        _check_choice("encoding", self.encoding, ENCODINGS)
        _check_choice("surrogate", self.surrogate, SURROGATES)
        for name, low, high, open_low in (
            ("beta", 0.0, 1.0, False), ("threshold", 0.0, math.inf, True),
            ("surrogate_slope", 0.0, math.inf, True),
        ):
            value = _check_real(name, getattr(self, name), low, high, open_low=open_low)
            object.__setattr__(self, name, value)
        for name in ("cell_a", "cell_b"):
            cell = getattr(self, name)
            if not isinstance(cell, Cell):
                raise ConfigError(f"{name} must be a Cell, got {type(cell).__name__}")
            cell.check(name)

    # -- serialisation --------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values; :meth:`from_dict` reads them back to an equal architecture."""
        return {
            "input_shape": list(self.input_shape), "num_classes": self.num_classes,
            "cell_a": self.cell_a.to_dict(), "cell_b": self.cell_b.to_dict(),
            "channels": self.channels, "timesteps": self.timesteps, "encoding": self.encoding,
            "beta": self.beta, "threshold": self.threshold, "surrogate": self.surrogate,
            "surrogate_slope": self.surrogate_slope, "hidden_features": self.hidden_features,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Architecture:
        """Read :meth:`to_dict`'s format; cells may also be SNASNet matrix strings."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"an architecture must be a JSON object, got {type(data).__name__}")
        allowed = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ConfigError(
                f"architecture has unknown field {unknown[0]!r}; allowed fields: {', '.join(sorted(allowed))}"
            )
        missing = [key for key in _REQUIRED if key not in data]
        if missing:
            raise ConfigError(f"architecture field {missing[0]!r} is missing")
        values = dict(data)
        for name in ("cell_a", "cell_b"):
            if not isinstance(values[name], Cell):
                values[name] = Cell.from_dict(values[name], where=name)
        return cls(**values)

    def to_json(self, *, indent: int | None = None) -> str:
        """JSON text (keys sorted); :meth:`from_json` reads it back."""
        return json.dumps(self.to_dict(), sort_keys=True, indent=indent)

    @classmethod
    def from_json(cls, text: str) -> Architecture:
        """Parse :meth:`to_json`'s text."""
        data = parse_json(text, "architecture JSON")
        if not isinstance(data, Mapping):
            raise ConfigError(f"architecture JSON must be an object, got {type(data).__name__}")
        return cls.from_dict(data)

    def key(self) -> str:
        """Stable identity: SHA-1 (hex) of the canonical JSON (sorted keys, no spaces).

        Equal architectures have equal keys, across processes and Python versions.
        """
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha1(canonical.encode("utf-8")).hexdigest()

    # -- the layer list -------------------------------------------------------------------------

    def to_network(self, name: str | None = None) -> Network:
        """The crossbar-mapped layers the cost model reads, one per conv/linear op.

        Every conv stores a bias per output channel (its batch norm folded in, as the deployed
        network and the NIR export store it), and so does ``fc_out``; ``fc_hidden`` has none.

        ``name`` defaults to ``"arch-"`` plus the first 12 characters of :meth:`key`.
        """
        c, h, w = self.input_shape
        width = self.channels
        layers = [Layer.conv(c, width, kernel_size=3, input_size=(h, w), padding=1, name="stem", bias=True)]
        layers += self.cell_a.layers("cell_a", channels=width, input_size=(h, w))
        layers.append(Layer.conv(
            width, 2 * width, kernel_size=3, input_size=(h, w), padding=1, pool_after=2, name="reduce", bias=True,
        ))
        half = (h // 2, w // 2)
        layers += self.cell_b.layers("cell_b", channels=2 * width, input_size=half, output_pool=2)
        flat = 2 * width * (half[0] // 2) * (half[1] // 2)
        if self.hidden_features:
            layers.append(Layer.linear(flat, self.hidden_features, name="fc_hidden"))
            flat = self.hidden_features
        layers.append(Layer.linear(flat, self.num_classes, name="fc_out", bias=True))
        return Network(
            tuple(layers), name=name if name is not None else f"arch-{self.key()[:12]}",
            timesteps=self.timesteps, encoding=self.encoding,
        )

    def summary(self) -> str:
        """One line for logs and tables."""
        c, h, w = self.input_shape
        hidden = f"fc {self.hidden_features}->{self.num_classes}" if self.hidden_features else (
            f"fc {self.num_classes}"
        )
        return (
            f"{c}x{h}x{w} C={self.channels} T={self.timesteps} {self.encoding} | "
            f"A[{self.cell_a.summary()}] | B[{self.cell_b.summary()}] | {hidden} | "
            f"LIF beta={self.beta:.3g} thr={self.threshold:.3g} "
            f"{self.surrogate}({self.surrogate_slope:.3g}) | "
            f"{self.to_network().params:,} weights"
        )


# ---------------------------------------------------------------------------------------------
# Validation helpers (shared with search_space)

def check_input_shape(shape: Any, where: str = "input_shape") -> tuple[int, int, int]:
    """Validate ``(channels, height, width)``: positive integers, height and width >= 4."""
    if isinstance(shape, (str, bytes)) or not isinstance(shape, Sequence) or len(shape) != 3:
        raise ConfigError(f"{where}={shape!r} must be (channels, height, width)")
    if any(isinstance(v, bool) or not isinstance(v, int) for v in shape):
        raise ConfigError(f"{where}={tuple(shape)!r} must hold integers")
    c, h, w = shape
    if c < 1 or h < MIN_INPUT_SIDE or w < MIN_INPUT_SIDE:
        raise ConfigError(
            f"{where}={tuple(shape)!r} is out of range; channels must be >= 1 and height, width >= "
            f"{MIN_INPUT_SIDE} (the network pools 2x2 twice)"
        )
    return (c, h, w)


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name}={value!r} is out of range; it must be an integer >= {low}")


def _check_choice(name: str, value: Any, allowed: Sequence[Any]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not allowed; use one of {', '.join(map(str, allowed))}")


def _check_real(name: str, value: Any, low: float, high: float, *, open_low: bool) -> float:
    ok = (
        not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
        and (value > low if open_low else value >= low) and value <= high
    )
    if not ok:
        bound = f"> {low}" if open_low else f">= {low}"
        upper = "" if math.isinf(high) else f" and <= {high}"
        raise ConfigError(f"{name}={value!r} is out of range; it must be a finite number {bound}{upper}")
    return float(value)
