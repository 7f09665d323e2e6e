"""Cells, architectures and the layer list the cost model reads."""

from __future__ import annotations

import itertools
import json
import random

import numpy as np
import pytest

from hasnas_optuna import OPS, Architecture, Cell, ConfigError
from hasnas_optuna.architecture import EDGES
from hasnas_optuna.cim import estimate_cost, load_hardware

CIFAR100_CELL = "0302 0030 3003 0000"  # SNASNet's released cells (paper.md 9.1)
CIFAR10_CELL = "0303 0030 2002 0200"


def fixed_architecture(**changes: object) -> Architecture:
    values: dict[str, object] = dict(
        input_shape=(1, 8, 8), num_classes=10, cell_a=Cell.from_matrix(CIFAR100_CELL),
        cell_b=Cell.from_matrix(CIFAR10_CELL), channels=8, hidden_features=32, timesteps=4,
        encoding="direct", beta=0.9, threshold=1.0, surrogate="atan", surrogate_slope=2.0,
    )
    values.update(changes)
    return Architecture(**values)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Cells


def test_released_snasnet_cells_decode_as_paper_says() -> None:
    a = Cell.from_matrix(CIFAR100_CELL)
    assert a.edges == ("conv3x3", "zero", "conv3x3", "conv1x1", "zero", "conv3x3")
    assert a.backward == ((2, 0, "conv3x3"),)
    b = Cell.from_matrix(CIFAR10_CELL)
    assert b.edges == ("conv3x3", "zero", "conv3x3", "conv3x3", "zero", "conv1x1")
    assert b.backward == ((2, 0, "conv1x1"), (3, 1, "conv1x1"))
    assert a.to_matrix() == CIFAR100_CELL and b.to_matrix() == CIFAR10_CELL
    assert a.is_valid() and b.is_valid()
    assert Cell.from_matrix([[int(c) for c in row] for row in CIFAR10_CELL.split()]) == b


def test_backward_edges_are_canonically_ordered() -> None:
    edges = ("conv3x3", "zero", "zero", "skip", "zero", "zero")
    one = Cell(edges, ((3, 1, "skip"), (2, 0, "conv1x1")))
    two = Cell(list(edges), [[2, 0, "conv1x1"], [3, 1, "skip"]])  # type: ignore[arg-type]
    assert one == two and hash(one) == hash(two)
    assert one.backward == ((2, 0, "conv1x1"), (3, 1, "skip"))


@pytest.mark.parametrize(("edges", "backward", "fragment"), [
    (("conv3x3",) * 5, (), "must be a list of 6 ops"),
    (("conv5x5",) + ("zero",) * 5, (), "edges[0]='conv5x5' is not an operation; use one of zero, skip"),
    (("skip",) * 6, ((0, 1, "conv3x3"),), "src > dst"),
    (("skip",) * 6, ((4, 1, "conv3x3"),), "nodes 0..3"),
    (("zero",) * 3 + ("skip",) + ("zero",) * 2, ((2, 0, "zero"),), "op='zero' is not allowed"),
    (("zero",) * 3 + ("skip",) + ("zero",) * 2, ((2, 0, "skip"), (2, 0, "conv1x1")), "second backward"),
    (("skip",) * 6, ((2, 0, "conv3x3"),), "shares its node pair with forward edge 0->2 skip"),
    (("skip",) * 6, ((2, 0),), "(src, dst, op) triple"),
])
def test_malformed_cells_are_rejected(edges: tuple, backward: tuple, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        Cell(edges, backward)
    assert fragment in str(info.value)


@pytest.mark.parametrize(("matrix", "fragment"), [
    ("0302 0030 3003", "four rows of four op codes"),
    ("0902 0030 3003 0000", "entry [0][1]=9 is not an op code; use 0..4 (0=zero, 1=skip"),
    ("03a2 0030 3003 0000", "four rows of four op codes"),
    ("1302 0030 3003 0000", "[0][0]=1 must be 0"),
    ("0302 3030 3003 0000", "shares its node pair with forward edge 0->1 conv3x3"),
])
def test_bad_matrices_are_rejected(matrix: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        Cell.from_matrix(matrix)
    assert fragment in str(info.value)


def test_bad_matrix_code_names_entry() -> None:
    with pytest.raises(ConfigError, match=r"entry \[0\]\[1\]=9 is not an op code; use 0..4"):
        Cell.from_matrix([[0, 9, 0, 0], [0] * 4, [0] * 4, [0] * 4])


@pytest.mark.parametrize(("edges", "backward", "problem"), [
    # nothing reaches node 3
    (("conv3x3", "conv3x3", "skip", "zero", "zero", "zero"), (), "no path of non-zero edges"),
    # node 1 gets input but never reaches the output
    (("conv3x3", "zero", "zero", "skip", "zero", "zero"), (), "edge 0->1 conv3x3 is dead: node 1 never"),
    # node 2 feeds the output but is never reached from the input
    (("zero", "zero", "zero", "skip", "zero", "conv1x1"), (), "edge 2->3 conv1x1 is dead: node 2 is never"),
    # a backward edge out of an unreachable node
    (("zero", "zero", "zero", "skip", "zero", "zero"), ((2, 0, "conv3x3"),),
     "edge backward 2->0 conv3x3 is dead: node 2 is never reached"),
])
def test_invalid_topologies_are_explained(edges: tuple, backward: tuple, problem: str) -> None:
    cell = Cell(edges, backward)
    assert not cell.is_valid()
    assert problem in cell.problems()[0]
    with pytest.raises(ConfigError) as info:
        fixed_architecture(cell_a=cell)
    message = str(info.value)
    assert message.startswith("cell_a is not a valid cell: ") and problem in message
    assert "Cell.repaired()" in message


def test_a_node_reached_only_through_a_backward_edge_is_live() -> None:
    # 0->2 conv, backward 2->1, 1->3: node 1 hears node 2 one step late and feeds the output
    # (SNASNet's reachability matrix includes the backward entries, paper.md 9.2).
    cell = Cell(("zero", "conv3x3", "zero", "zero", "conv1x1", "zero"), ((2, 1, "skip"),))
    assert cell.is_valid()
    assert cell.live_nodes() == {0, 1, 2, 3}


def test_repair_prunes_only_dead_edges_and_falls_back_to_identity() -> None:
    cell = Cell(("conv3x3", "conv1x1", "conv3x3", "skip", "zero", "zero"), ((3, 1, "skip"),))
    # node 1 and 2 never reach node 3 (the backward 3->1 edge makes 1 reachable from 3, not vice versa)
    fixed = cell.repaired()
    assert fixed.edges == ("zero", "zero", "zero", "skip", "zero", "zero") and fixed.backward == ()
    assert fixed.is_valid() and fixed.repaired() is fixed
    assert Cell(("zero",) * 6).repaired().summary() == "0->3 skip"
    assert Cell(("avgpool3x3", "zero", "zero", "zero", "zero", "zero")).repaired(
        fallback_op="conv3x3"
    ).edges == ("zero", "zero", "zero", "conv3x3", "zero", "zero")
    with pytest.raises(ConfigError, match="fallback_op='zero' is not allowed"):
        cell.repaired(fallback_op="zero")


def snasnet_sanity(matrix: np.ndarray) -> np.ndarray:
    """SNASNet's sanity check (model_snn.py, paper.md 9.2 rules 1-3), reimplemented as an oracle."""
    con = matrix.copy()
    m = (matrix != 0).astype(int)
    graph = m + m @ m + m @ m @ m + m @ m @ m @ m
    for node in range(3):
        if graph[node, 3] == 0:
            con[:, node] = 0
            con[node, :] = 0
    for node in range(3):
        if graph[0, node + 1] == 0:
            con[:, node + 1] = 0
            con[node + 1, :] = 0
    return con


def matrix_of(cell: Cell) -> np.ndarray:
    return np.array([[int(c) for c in row] for row in cell.to_matrix().split()])


def check_against_snasnet(cell: Cell) -> None:
    fixed = cell.repaired()
    assert fixed.is_valid(), cell
    assert fixed.repaired() == fixed
    if cell.is_valid():
        assert fixed == cell
    oracle = snasnet_sanity(matrix_of(cell))
    if oracle.any():  # SNASNet kept a path: our repair is its zeroing
        assert (matrix_of(fixed) == oracle).all(), cell
    else:  # SNASNet would resample; we fall back to the identity cell
        assert fixed == Cell(("zero", "zero", "zero", "skip", "zero", "zero"))


def test_repair_matches_snasnet_on_every_forward_cell() -> None:
    valid = 0
    for ops in itertools.product(OPS, repeat=len(EDGES)):
        cell = Cell(ops)
        check_against_snasnet(cell)
        valid += cell.is_valid()
    assert 0 < valid < 5 ** 6


def test_repair_matches_snasnet_on_random_backward_cells() -> None:
    rng = random.Random(7)
    for _ in range(3000):
        edges, backward = [], []
        for s, d in EDGES:
            op = rng.choice(OPS)
            if rng.random() < 0.5:
                edges.append(op)
            else:
                edges.append("zero")
                if op != "zero":
                    backward.append((d, s, op))
        check_against_snasnet(Cell(tuple(edges), tuple(backward)))


def test_cell_summary() -> None:
    assert Cell.from_matrix(CIFAR100_CELL).summary() == (
        "0->1 conv3x3, 1->2 conv3x3, 0->3 conv1x1, 2->3 conv3x3, back 2->0 conv3x3"
    )
    assert Cell(("skip",) + ("zero",) * 5).summary() == "0->1 skip; no input-output path"


# ---------------------------------------------------------------------------------------------
# Architecture values


def test_json_round_trip_and_key() -> None:
    arch = fixed_architecture()
    assert Architecture.from_dict(arch.to_dict()) == arch
    assert Architecture.from_json(arch.to_json()) == arch
    assert Architecture.from_json(arch.to_json(indent=2)) == arch
    assert json.loads(arch.to_json())["cell_a"] == {
        "edges": ["conv3x3", "zero", "conv3x3", "conv1x1", "zero", "conv3x3"],
        "backward": [[2, 0, "conv3x3"]],
    }
    # The canonical JSON, hence the key, must not drift between releases: stored results refer to it.
    assert arch.key() == "f3649032e33eaab9e29d9bf098796005f063179e"
    assert Architecture.from_json(arch.to_json()).key() == arch.key()


def test_equal_architectures_hash_equal_and_keys_separate_values() -> None:
    one, two = fixed_architecture(), fixed_architecture(cell_a=Cell.from_matrix(CIFAR100_CELL))
    assert one == two and hash(one) == hash(two) and one.key() == two.key() and len({one, two}) == 1
    assert fixed_architecture(beta=1).key() == fixed_architecture(beta=1.0).key()  # numbers normalised
    keys = {
        fixed_architecture(**change).key()
        for change in ({}, {"beta": 0.91}, {"channels": 16}, {"encoding": "rate"}, {"hidden_features": 0},
                       {"cell_b": Cell.from_matrix(CIFAR100_CELL)}, {"surrogate": "sigmoid"})
    }
    assert len(keys) == 7


def test_from_dict_accepts_matrix_strings_and_rejects_unknown_fields() -> None:
    data = fixed_architecture().to_dict()
    data["cell_a"], data["cell_b"] = CIFAR100_CELL, CIFAR10_CELL
    assert Architecture.from_dict(data) == fixed_architecture()
    with pytest.raises(ConfigError, match="unknown field 'chanels'; allowed fields: beta, cell_a"):
        Architecture.from_dict({**data, "chanels": 8})
    with pytest.raises(ConfigError, match="architecture field 'cell_b' is missing"):
        Architecture.from_dict({k: v for k, v in data.items() if k != "cell_b"})
    with pytest.raises(ConfigError, match="cell_b has unknown field 'ops'"):
        Architecture.from_dict({**data, "cell_b": {"ops": []}})
    with pytest.raises(ConfigError, match=r"cell_a.edges\[5\]='conv7x7' is not an operation"):
        Architecture.from_dict({**data, "cell_a": {"edges": ["skip"] * 5 + ["conv7x7"]}})
    with pytest.raises(ConfigError, match="malformed JSON at line 1"):
        Architecture.from_json("{")


@pytest.mark.parametrize(("change", "fragment"), [
    ({"encoding": "spikes"}, "encoding='spikes' is not allowed; use one of direct, rate, latency"),
    ({"surrogate": "relu"}, "surrogate='relu' is not allowed; use one of atan, fast_sigmoid, sigmoid"),
    ({"beta": 1.5}, "beta=1.5 is out of range; it must be a finite number >= 0.0 and <= 1.0"),
    ({"threshold": 0}, "threshold=0 is out of range; it must be a finite number > 0.0"),
    ({"surrogate_slope": float("nan")}, "surrogate_slope=nan is out of range"),
    ({"channels": 0}, "channels=0 is out of range; it must be an integer >= 1"),
    ({"timesteps": 2.5}, "timesteps=2.5 is out of range; it must be an integer >= 1"),
    ({"hidden_features": -1}, "hidden_features=-1 is out of range; it must be an integer >= 0"),
    ({"num_classes": 1}, "num_classes=1 is out of range; it must be an integer >= 2"),
    ({"input_shape": (1, 2, 8)}, "input_shape=(1, 2, 8) is out of range; channels must be >= 1 and height"),
    ({"input_shape": (8, 8)}, "input_shape=(8, 8) must be (channels, height, width)"),
    ({"cell_a": "0302 0030 3003 0000"}, "cell_a must be a Cell, got str"),
])
def test_bad_architecture_fields_are_named(change: dict, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        fixed_architecture(**change)
    assert fragment in str(info.value)


# ---------------------------------------------------------------------------------------------
# The layer list


def test_layer_list_of_a_fixed_architecture() -> None:
    # Hand count, input 1x8x8, C = 8 (Cell A at 8 channels 8x8, Cell B at 16 channels 4x4):
    #   stem      3*3*1*8                                   =    72
    #   cell A    e0 3x3 576 + e2 3x3 576 + e3 1x1 64 + e5 3x3 576 + back 2->0 3x3 576 = 2,368
    #   reduce    3*3*8*16                                  = 1,152
    #   cell B    e0 3x3 2,304 + e2 3x3 2,304 + e3 3x3 2,304 + e5 1x1 256
    #             + back 2->0 1x1 256 + back 3->1 1x1 256   = 7,680
    #   fc_hidden 16*2*2 = 64 inputs (4x4 pooled 2x2) * 32  = 2,048
    #   fc_out    32*10                                     =   320
    #   total                                               = 13,640
    # Stored biases (batch norm folded into each conv, and fc_out's): 8 + 5*8 + 16 + 6*16 + 10 = 170
    arch = fixed_architecture()
    net = arch.to_network()
    rows = [
        (layer.name, layer.type, layer.in_channels, layer.out_channels, layer.kernel_size,
         layer.input_size, layer.padding, layer.pool_after, layer.params)
        for layer in net.layers
    ]
    assert rows == [
        ("stem", "conv", 1, 8, 3, (8, 8), 1, 1, 72),
        ("cell_a.e0.conv3x3", "conv", 8, 8, 3, (8, 8), 1, 1, 576),
        ("cell_a.e2.conv3x3", "conv", 8, 8, 3, (8, 8), 1, 1, 576),
        ("cell_a.e3.conv1x1", "conv", 8, 8, 1, (8, 8), 0, 1, 64),
        ("cell_a.e5.conv3x3", "conv", 8, 8, 3, (8, 8), 1, 1, 576),
        ("cell_a.b2to0.conv3x3", "conv", 8, 8, 3, (8, 8), 1, 1, 576),
        ("reduce", "conv", 8, 16, 3, (8, 8), 1, 2, 1152),
        ("cell_b.e0.conv3x3", "conv", 16, 16, 3, (4, 4), 1, 1, 2304),
        ("cell_b.e2.conv3x3", "conv", 16, 16, 3, (4, 4), 1, 1, 2304),
        ("cell_b.e3.conv3x3", "conv", 16, 16, 3, (4, 4), 1, 2, 2304),  # into node 3: pooled
        ("cell_b.e5.conv1x1", "conv", 16, 16, 1, (4, 4), 0, 2, 256),
        ("cell_b.b2to0.conv1x1", "conv", 16, 16, 1, (4, 4), 0, 1, 256),
        ("cell_b.b3to1.conv1x1", "conv", 16, 16, 1, (4, 4), 0, 1, 256),
        ("fc_hidden", "linear", 64, 32, 1, (1, 1), 0, 1, 2048),
        ("fc_out", "linear", 32, 10, 1, (1, 1), 0, 1, 320),
    ]
    assert net.params == 13_640
    assert (net.timesteps, net.encoding, net.name) == (4, "direct", f"arch-{arch.key()[:12]}")
    assert arch.to_network("mine").name == "mine"
    report = estimate_cost(net, load_hardware())
    assert report.memory_params == 13_640 + 170 and report.energy_uj > 0 and report.latency_ms > 0
    assert [layer.bias for layer in net.layers] == [True] * 13 + [False, True]
    assert "13,640 weights" in arch.summary() and "C=8 T=4 direct" in arch.summary()


def test_layer_list_without_hidden_layer_on_an_odd_input() -> None:
    # 3x10x6, C = 4, both cells the single edge 0->3 conv1x1, rate encoding, T = 6:
    #   stem 3*3*3*4 = 108; cell A 4*4 = 16; reduce 3*3*4*8 = 288; Cell B at 5x3: 8*8 = 64;
    #   pooled 5x3 -> 2x1 (floor), fc_out 8*2*1*7 = 112; total 588
    cell = Cell(("zero", "zero", "zero", "conv1x1", "zero", "zero"))
    arch = Architecture(input_shape=(3, 10, 6), num_classes=7, cell_a=cell, cell_b=cell, channels=4,
                        timesteps=6, encoding="rate")
    net = arch.to_network()
    assert [layer.name for layer in net.layers] == [
        "stem", "cell_a.e3.conv1x1", "reduce", "cell_b.e3.conv1x1", "fc_out"
    ]
    assert net.layers[3].input_size == (5, 3) and net.layers[3].pool_after == 2
    assert net.params == 588 and net.layers[-1].in_channels == 16
    assert (net.timesteps, net.encoding) == (6, "rate")
    estimate_cost(net, load_hardware("spikesim-65nm"))


def test_weightless_cells_give_the_bare_macro_network() -> None:
    cell = Cell(("skip", "avgpool3x3", "skip", "skip", "zero", "avgpool3x3"))
    net = Architecture(input_shape=(1, 8, 8), num_classes=10, cell_a=cell, cell_b=cell).to_network()
    assert [layer.name for layer in net.layers] == ["stem", "reduce", "fc_out"]


def test_memory_counts_what_the_exported_network_stores() -> None:
    # the cost model's memory is the numbers the deployed network stores: every weight and bias
    # of the NIR graph's Conv2d / Linear / Affine nodes (batch norm folded), on random networks
    import nir

    from hasnas_optuna.export import to_nir
    from hasnas_optuna.network import build_network, release_neurons

    rng = random.Random(3)
    for _ in range(12):
        cells = [Cell(tuple(rng.choice(OPS) for _ in EDGES)).repaired() for _ in range(2)]
        arch = fixed_architecture(cell_a=cells[0], cell_b=cells[1], hidden_features=rng.choice([0, 16]),
                                  channels=rng.choice([4, 8]))
        net = build_network(arch)
        graph = to_nir(net.eval())
        stored = 0
        for node in graph.nodes.values():
            if isinstance(node, (nir.Conv2d, nir.Linear, nir.Affine)):
                stored += node.weight.size + (np.size(node.bias) if hasattr(node, "bias") else 0)
        assert arch.to_network().memory_params == stored
        assert estimate_cost(arch.to_network(), load_hardware()).memory_params == stored
        release_neurons(net)
