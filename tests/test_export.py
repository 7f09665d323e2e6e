"""Export: weights and NIR graphs reproduce the network; ``hasnas export`` and its one-line errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import nir
import numpy as np
import optuna
import pytest
import snntorch
import torch
from test_artifacts import build_study, probe

from hasnas_optuna import ConfigError
from hasnas_optuna.architecture import Architecture, Cell
from hasnas_optuna.cli import main
from hasnas_optuna.export import DT, choose_trial, load_trained_network, run_nir, to_nir
from hasnas_optuna.network import SpikingNetwork, build_network, release_neurons


@pytest.fixture(autouse=True)
def _release_neurons() -> Iterator[None]:
    """Networks built here leave snntorch's global neuron registry as they found it."""
    before = {id(n) for n in snntorch.SpikingNeuron.instances}
    yield
    snntorch.SpikingNeuron.instances[:] = [n for n in snntorch.SpikingNeuron.instances if id(n) in before]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, optuna.Study, Path]:
    return build_study(tmp_path_factory.mktemp("export"), tmp_path_factory.getbasetemp())


def trained_like(arch: Architecture, seed: int) -> SpikingNetwork:
    """A network with random weights and random batch-norm statistics (as after training)."""
    torch.manual_seed(seed)
    net = build_network(arch)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)  # type: ignore[union-attr]
            module.running_var.uniform_(0.5, 2.0)  # type: ignore[union-attr]
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return net.eval()


CELLS = {
    "feed-forward": Cell(("conv3x3", "skip", "conv1x1", "skip", "avgpool3x3", "conv3x3")),
    "repeated skip": Cell(("skip", "zero", "zero", "skip", "skip", "zero")),  # node 3 = 2 x node 0
    "backward conv": Cell.from_matrix("0302 0030 3003 0000"),
    "backward skip, not on a loop": Cell(("conv3x3", "conv1x1", "zero", "skip", "conv3x3", "conv1x1"),
                                         backward=((2, 1, "skip"),)),
    "backward pool into the input": Cell(("conv1x1", "zero", "conv3x3", "zero", "zero", "skip"),
                                         backward=((3, 0, "avgpool3x3"),)),
}


@pytest.mark.parametrize(("name", "encoding"), [(name, "direct") for name in CELLS] + [
    ("backward conv", "rate"), ("backward skip, not on a loop", "latency")])
def test_nir_graph_read_back_reproduces_the_network(name: str, encoding: str, tmp_path: Path) -> None:
    cell = CELLS[name]
    arch = Architecture(input_shape=(1, 8, 8), num_classes=10, cell_a=cell, cell_b=CELLS["backward conv"],
                        channels=4, timesteps=5, encoding=encoding, hidden_features=16 if encoding != "rate" else 0,
                        beta=0.8, threshold=0.7)
    net = trained_like(arch, seed=len(name))
    images = probe()
    with torch.no_grad():
        torch.manual_seed(7)
        expected = net(images)
        torch.manual_seed(7)
        inputs = net.encode(images)  # the same spikes the network saw
    path = tmp_path / "net.nir"
    nir.write(str(path), to_nir(net))
    graph = nir.read(str(path))
    assert graph.metadata["timesteps"] == 5 and graph.metadata["encoding"] == encoding
    assert Architecture.from_json(str(graph.metadata["architecture"])) == arch
    with torch.no_grad():
        got = run_nir(graph, inputs if encoding != "direct" else images, timesteps=5)
    assert got.shape == (5, 4, 10)
    assert torch.allclose(got.mean(0), expected, atol=1e-5), (got.mean(0) - expected).abs().max()
    release_neurons(net)


def test_graph_structure_follows_the_dataflow() -> None:
    arch = Architecture(input_shape=(1, 8, 8), num_classes=10, cell_a=CELLS["repeated skip"],
                        cell_b=CELLS["backward conv"], channels=4, hidden_features=16)
    graph = to_nir(trained_like(arch, 0))
    nodes, edges = graph.nodes, set(graph.edges)
    # Cell A: node 3 = skip(node 0) + skip(node 1 = skip(node 0)): the stem counted twice, through a Scale of 2
    assert isinstance(nodes["stem.times2"], nir.Scale) and float(np.unique(nodes["stem.times2"].scale)[0]) == 2.0
    assert {("stem", "stem.times2"), ("stem.times2", "reduce.lif")} <= edges
    # Cell B: the backward conv 2->0 reads node 2's spikes and feeds node 0 one step later
    assert ("cell_b.n2.lif", "cell_b.b2to0.conv3x3") in edges
    assert ("cell_b.b2to0.conv3x3", "cell_b.b2to0.conv3x3.delay") in edges
    assert ("cell_b.b2to0.conv3x3.delay", "cell_b.n0.lif") in edges
    assert np.allclose(nodes["cell_b.b2to0.conv3x3.delay"].delay, DT)
    lif = nodes["cell_a.n0.lif"] if "cell_a.n0.lif" in nodes else nodes["reduce.lif"]
    assert lif.metadata["reset_mechanism"] == "subtract"
    assert np.allclose(1 - DT / lif.tau, arch.beta) and np.allclose(lif.v_threshold, arch.threshold)
    assert [type(nodes[n]).__name__ for n in ("flatten", "fc_hidden", "fc_out", "readout", "output")] == [
        "Flatten", "Linear", "Affine", "LI", "Output"]


def test_nirtorch_runs_a_feed_forward_graph_the_same_way() -> None:
    """An independent executor of the graph's wiring: nirtorch, with node maps for the neurons."""
    import nirtorch

    class Neuron(torch.nn.Module):
        def __init__(self, node: nir.NIRNode, spiking: bool) -> None:
            super().__init__()
            tau = torch.as_tensor(node.tau, dtype=torch.float32)
            self.beta = 1 - DT / tau
            self.gain = torch.as_tensor(node.r, dtype=torch.float32) * DT / tau
            self.threshold = torch.as_tensor(node.v_threshold, dtype=torch.float32) if spiking else None

        def forward(self, x: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
            old = torch.zeros_like(x) if state is None else state
            v = self.beta * old + self.gain * x
            if self.threshold is None:
                return v, v
            v = v - self.threshold * (old > self.threshold).float()
            return (v > self.threshold).float(), v

    class Scale(torch.nn.Module):
        def __init__(self, node: nir.NIRNode) -> None:
            super().__init__()
            self.scale = torch.as_tensor(node.scale, dtype=torch.float32)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.scale

    def affine(node: nir.NIRNode) -> torch.nn.Linear:  # nirtorch 2.6's own map drops the bias
        layer = torch.nn.Linear(node.weight.shape[1], node.weight.shape[0])
        layer.weight.data, layer.bias.data = torch.from_numpy(node.weight), torch.from_numpy(node.bias)
        return layer

    node_map = {
        nir.LIF: lambda n: Neuron(n, True), nir.LI: lambda n: Neuron(n, False), nir.Scale: Scale, nir.Affine: affine,
        nir.Flatten: lambda n: torch.nn.Flatten(n.start_dim + 1, n.end_dim),  # NIR dims exclude the batch
    }
    arch = Architecture(input_shape=(1, 8, 8), num_classes=10, cell_a=CELLS["repeated skip"],
                        cell_b=CELLS["feed-forward"], channels=4, hidden_features=16, timesteps=4)
    net = trained_like(arch, 3)
    module = nirtorch.nir_to_torch(to_nir(net), node_map)
    images = probe()
    state, outputs = None, []
    with torch.no_grad():
        for _ in range(arch.timesteps):
            out, state = module(images, state)
            outputs.append(out)
        assert torch.allclose(torch.stack(outputs).mean(0).float(), net(images), atol=1e-5)


def test_export_of_the_best_trial_reloads_to_the_trained_outputs(tiny: tuple[str, optuna.Study, Path],
                                                                 tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    storage, study, _ = tiny
    best = choose_trial(study)
    assert best.user_attrs["feasible"] == 1 and best.user_attrs["trained"]
    out = tmp_path / "out"
    assert main(["export", "--storage", storage, "--study-name", "tiny", "--out", str(out)]) == 0
    assert f"trial {best.number} exported to" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["architecture.json", "cost_report.json", "network.nir",
                                                      "trial.json", "weights.pt"]
    trained = torch.tensor(best.user_attrs["probe_logits"])
    net = load_trained_network(out / "architecture.json", out / "weights.pt")
    with torch.no_grad():
        assert torch.allclose(net(probe()), trained, atol=1e-6)
        graph = nir.read(str(out / "network.nir"))
        assert torch.allclose(run_nir(graph, probe()).mean(0), trained, atol=1e-5)
    cost = json.loads((out / "cost_report.json").read_text())
    assert cost["energy_uj"] == pytest.approx(best.user_attrs["cost/energy_uj"])
    summary = json.loads((out / "trial.json").read_text())
    assert summary["trial"] == best.number and summary["constraints"] == best.constraints
    release_neurons(net)


def test_export_of_a_chosen_trial(tiny: tuple[str, optuna.Study, Path], tmp_path: Path) -> None:
    storage, study, _ = tiny
    other = [t for t in study.trials if t.user_attrs["trained"]][-1]
    assert main(["export", "--storage", storage, "--study-name", "tiny", "--trial", str(other.number),
                 "--out", str(tmp_path)]) == 0
    net = load_trained_network(tmp_path / "architecture.json", tmp_path / "weights.pt")
    with torch.no_grad():
        assert torch.allclose(net(probe()), torch.tensor(other.user_attrs["probe_logits"]), atol=1e-6)
    release_neurons(net)


def test_user_errors_are_one_line(tiny: tuple[str, optuna.Study, Path], tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    storage, study, _ = tiny
    rejected = next(t for t in study.trials if not t.user_attrs["trained"]).number
    blocker = tmp_path / "file"
    blocker.write_text("")
    base = ["export", "--storage", storage, "--study-name", "tiny"]
    cases = [
        ([*base, "--trial", "99", "--out", str(tmp_path)], "trial 99 is out of range: the study has trials 0..5"),
        ([*base, "--trial", str(rejected), "--out", str(tmp_path)], f"trial {rejected} was never trained"),
        ([*base, "--out", str(blocker / "x")], "cannot write to output folder"),
        ([*base, "--out", str(tmp_path), "--artifact-dir", str(tmp_path / "none")], "artifact folder"),
        (["export", "--storage", storage, "--study-name", "nope", "--out", str(tmp_path)],
         "no study 'nope' in sqlite:///"),
        (["export", "--storage", f"sqlite:///{tmp_path / 'missing.db'}", "--study-name", "tiny", "--out",
          str(tmp_path)], "no SQLite file"),
        (["export", "--storage", "sqlite://", "--study-name", "tiny", "--out", str(tmp_path)], "in-memory"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("hasnas export: error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "missing.db").exists()  # a typo in the storage creates nothing
    empty = optuna.create_study(study_name="empty", storage=storage)
    with pytest.raises(ConfigError, match="no feasible trained trial yet; choose one with --trial N"):
        choose_trial(empty)


@pytest.mark.parametrize("crossbar", [64, 256])
def test_recomputed_cost_report_uses_the_chip_the_search_used(crossbar: int) -> None:
    # a joint chip search's trial without a cost_report.json artifact: the report is rebuilt on the
    # same chip the sampler and the objective costed (rows_per_read follows the crossbar size)
    from optuna.distributions import CategoricalDistribution

    from hasnas_optuna.cim import estimate_cost, load_hardware
    from hasnas_optuna.dashboard import HARDWARE_ATTR
    from hasnas_optuna.export import trial_cost_report
    from hasnas_optuna.search_space import HardwareSpace, SearchSpace, hardware_from_params

    space = SearchSpace(hardware=HardwareSpace())
    arch = Architecture(input_shape=(1, 8, 8), num_classes=10, cell_a=Cell.from_matrix("0302 0030 3003 0000"),
                        cell_b=Cell.from_matrix("0302 0030 3003 0000"), channels=4)
    knobs = {"hw/crossbar_size": crossbar, "hw/weight_bits": 6, "hw/bits_per_cell": 2, "hw/adc_bits": 4}
    study = optuna.create_study()
    study.set_user_attr(HARDWARE_ATTR, {"preset": "neurosim-22nm", "overrides": {}})
    study.add_trial(optuna.trial.create_trial(
        value=0.9, params=knobs, user_attrs={"architecture": arch.to_dict()},
        distributions={k: CategoricalDistribution(getattr(HardwareSpace(), k[3:])) for k in knobs}))
    searched = estimate_cost(arch.to_network(), hardware_from_params(knobs, space, load_hardware()))
    report = trial_cost_report(study, study.trials[0])
    assert report["hardware"] == "neurosim-22nm"
    assert report["area_mm2"] == pytest.approx(searched.area_mm2, rel=1e-12)
    assert report["energy_uj"] == pytest.approx(searched.energy_uj, rel=1e-12)
    assert report["latency_ms"] == pytest.approx(searched.latency_ms, rel=1e-12)
