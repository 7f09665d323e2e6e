"""The torch network: every sampled architecture builds, runs, trains a step, and matches its cost model."""

from __future__ import annotations

import optuna
import pytest
import snntorch
import torch
from snntorch import surrogate

from hasnas_optuna.architecture import Architecture, Cell
from hasnas_optuna.network import LIF, SigmoidSpike, _surrogate, build_network, release_neurons
from hasnas_optuna.search_space import SearchSpace, suggest_architecture


def sampled(space: SearchSpace, n: int, seed: int) -> list[Architecture]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    archs = []
    for _ in range(n):
        trial = study.ask()
        archs.append(suggest_architecture(trial, space))
        study.tell(trial, 0.0)
    return archs


@pytest.mark.parametrize("backward", [False, True])
def test_every_sampled_architecture_builds_runs_and_matches_the_cost_model(backward: bool) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = SearchSpace(backward_edges=backward, channels=(4, 8), hidden_features=(0, 16))
    before = list(snntorch.SpikingNeuron.instances)  # e.g. a doctest's network, left to the garbage collector
    for arch in sampled(space, 25, seed=3):
        net = build_network(arch)
        layers = arch.to_network().layers
        # what we cost is what we train: crossbar-mapped weights equal the cost model's parameters
        assert net.crossbar_weights() == sum(layer.params for layer in layers)
        net.start_recording()
        logits = net(torch.rand(4, *arch.input_shape))
        rates = net.stop_recording()
        assert logits.shape == (4, arch.num_classes) and torch.isfinite(logits).all()
        # every crossbar layer saw spikes (or, the direct-encoded stem, the analog image) and nothing else did
        assert set(rates) == {layer.name for layer in layers}
        assert all(0.0 <= rate <= 1.0 for rate in rates.values())
        logits.sum().backward()
        if not backward:  # a feedback loop may need more than T steps to reach the output
            assert all(p.grad is not None for p in net.parameters())
        assert net.stem[0].weight.grad is not None
        release_neurons(net)
    assert snntorch.SpikingNeuron.instances == before


def test_multi_step_equals_per_step_execution() -> None:
    cell = Cell.from_matrix("0303 0034 0001 0000")  # forward-only: convs, skip and avgpool
    arch = Architecture(input_shape=(1, 8, 8), num_classes=10, cell_a=cell, cell_b=cell, channels=4, timesteps=5)
    net = build_network(arch).eval()
    x = torch.randn(5, 3, 4, 8, 8)  # [T, B, C, H, W] node-0 currents
    with torch.no_grad():
        folded = net.cell_a(x, net)  # stateless layers once on T x B, LIF loops over T
        stepped = net.cell_a._per_step(x, net)  # everything one timestep at a time
    assert torch.allclose(folded, stepped, atol=1e-5)
    release_neurons(net)


def test_static_input_runs_the_stem_once_and_encodings_differ() -> None:
    cell = Cell.from_matrix("0302 0030 0003 0000")
    calls: list[int] = []
    for encoding in ("direct", "rate", "latency"):
        arch = Architecture(input_shape=(1, 8, 8), num_classes=10, cell_a=cell, cell_b=cell, channels=4,
                            timesteps=6, encoding=encoding)
        net = build_network(arch)
        handle = net.stem[0].register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
        net(torch.rand(2, 1, 8, 8))
        handle.remove()
        release_neurons(net)
    # the conv sees one static image per sample for direct encoding, T spike frames otherwise
    assert calls == [2, 12, 12]


def test_rate_encoding_records_the_input_spike_rate() -> None:
    cell = Cell.from_matrix("0302 0030 0003 0000")
    arch = Architecture(input_shape=(1, 8, 8), num_classes=10, cell_a=cell, cell_b=cell, channels=4,
                        timesteps=50, encoding="rate")
    net = build_network(arch)
    net.start_recording()
    torch.manual_seed(0)
    net(torch.full((8, 1, 8, 8), 0.3))
    assert net.stop_recording()["stem"] == pytest.approx(0.3, abs=0.02)
    release_neurons(net)


def test_release_neurons_only_drops_that_network() -> None:
    cell = Cell.from_matrix("0302 0030 0003 0000")
    arch = Architecture(input_shape=(1, 8, 8), num_classes=10, cell_a=cell, cell_b=cell, channels=4)
    a, b = build_network(arch), build_network(arch)
    before = len(snntorch.SpikingNeuron.instances)
    release_neurons(a)
    after = len(snntorch.SpikingNeuron.instances)
    assert 0 < after < before
    release_neurons(b)
    assert len(snntorch.SpikingNeuron.instances) == before - 2 * (before - after)


def test_sigmoid_surrogate_is_finite_where_snntorchs_overflows() -> None:
    u = torch.tensor([-200.0, -20.0, -1.0, 0.0, 0.3, 5.0], requires_grad=True)
    SigmoidSpike.apply(u, 6.7).sum().backward()
    ours = u.grad
    assert ours is not None and torch.isfinite(ours).all()
    reference = torch.tensor([-200.0, -20.0, -1.0, 0.0, 0.3, 5.0], requires_grad=True)
    surrogate.sigmoid(slope=6.7)(reference).sum().backward()
    theirs = reference.grad
    assert theirs is not None and torch.isnan(theirs[0]) and torch.isnan(theirs[1])  # exp(134) overflows float32
    torch.testing.assert_close(ours[2:], theirs[2:])  # same surrogate where snntorch's is finite
    assert float(ours[3]) == pytest.approx(6.7 / 4)


@pytest.mark.parametrize("steps", [1, 2, 6])
@pytest.mark.parametrize(("name", "slope"), [("atan", 2.0), ("fast_sigmoid", 5.0), ("sigmoid", 6.7)])
def test_multi_step_lif_equals_snntorchs_leaky_stepped(name: str, slope: float, steps: int) -> None:
    """The fused recurrence (eager) and the plain one (under torch.compile) against snntorch.Leaky.

    atan and fast_sigmoid are snntorch's surrogates; sigmoid is our stable one (SigmoidSpike).
    """
    torch.manual_seed(0)
    leaky = snntorch.Leaky(beta=0.8, threshold=0.7, spike_grad=_surrogate(name, slope), init_hidden=False)
    currents = torch.randn(steps * 3, 4, 5, 5).contiguous(memory_format=torch.channels_last).view(steps, 3, 4, 5, 5)
    currents[0, 0, 0] = -120.0  # far below threshold: exp(-k u) overflows float32 (see the sigmoid test below)
    weights = torch.randn(steps, 3, 4, 5, 5)  # loss = sum(w * spikes): every step's spikes matter

    x = currents.clone().requires_grad_()
    mem, reference = torch.zeros_like(x[0]), []
    for step in x:
        spk, mem = leaky(step, mem)
        reference.append(spk)
    expected = torch.stack(reference)
    (expected * weights).sum().backward()
    expected_grad = x.grad
    assert expected_grad is not None

    lif = LIF(0.8, 0.7, name, slope)
    for run in (lif.forward, lif.unfused):
        x = currents.clone().requires_grad_()
        spikes = run(x)
        (spikes * weights).sum().backward()
        assert torch.equal(spikes, expected), run.__name__
        assert x.grad is not None and torch.isfinite(x.grad).all(), run.__name__
        torch.testing.assert_close(x.grad, expected_grad, rtol=1e-5, atol=1e-6, msg=run.__name__)
    # every step keeps its input's memory layout (channels_last here), so the next conv needs no reorder
    assert lif(currents)[0].is_contiguous(memory_format=torch.channels_last)
    release_neurons(leaky)
    release_neurons(lif)


def test_multi_step_lif_takes_a_static_input_and_skips_the_surrogate_without_grad() -> None:
    lif = LIF(0.9, 1.0, "atan", 2.0)
    image = torch.full((2, 3), 0.6, requires_grad=True)
    spikes = lif(image.expand(4, 2, 3))  # the same current at every step (a static stem)
    # v = 0.6, 1.14 (fires), 0.6 + 0.9 * 1.14 - 1 = 0.626, 0.6 + 0.5634 = 1.1634 (fires)
    assert spikes[:, 0, 0].tolist() == [0.0, 1.0, 0.0, 1.0]
    spikes.sum().backward()
    assert image.grad is not None and image.grad.shape == (2, 3) and (image.grad > 0).all()
    with torch.no_grad():
        assert torch.equal(lif(image.detach().expand(4, 2, 3)), spikes)
    release_neurons(lif)


@pytest.mark.parametrize("cells", ["0302 0031 0004 0000", "0302 0030 3003 0000"])  # forward-only; backward edge
def test_channels_last_and_contiguous_networks_compute_the_same(cells: str) -> None:
    cell = Cell.from_matrix(cells)
    arch = Architecture(input_shape=(3, 8, 8), num_classes=10, cell_a=cell, cell_b=cell, channels=4, timesteps=3,
                        hidden_features=8)
    torch.manual_seed(0)
    nhwc = build_network(arch)
    nchw = build_network(arch, memory_format=torch.contiguous_format)
    nchw.load_state_dict(nhwc.state_dict())
    assert nhwc.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert nchw.stem[0].weight.is_contiguous()
    images = torch.rand(6, 3, 8, 8)
    out_nhwc, out_nchw = nhwc(images), nchw(images)
    torch.testing.assert_close(out_nhwc, out_nchw, rtol=1e-5, atol=1e-5)
    out_nhwc.square().sum().backward()
    out_nchw.square().sum().backward()
    for (name, p), q in zip(nhwc.named_parameters(), nchw.parameters(), strict=True):
        assert p.grad is not None and q.grad is not None, name
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5, msg=name)
    release_neurons(nhwc)
    release_neurons(nchw)


def test_build_network_names_a_bad_memory_format() -> None:
    cell = Cell.from_matrix("0302 0030 0003 0000")
    arch = Architecture(input_shape=(1, 8, 8), num_classes=10, cell_a=cell, cell_b=cell, channels=4)
    with pytest.raises(ValueError, match=r"memory_format=torch.channels_last_3d must be torch.channels_last or "
                                         r"torch.contiguous_format"):
        build_network(arch, memory_format=torch.channels_last_3d)
