"""Co-design: the chip's weight and ADC precision in the trained network (hasnas_optuna.quantization).

Hand-computed integer examples for the quantised layer and the ADC, distinct levels per layer,
8-bit against float training on digits, and the export round trip of a quantised network.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import optuna
import pytest
import snntorch
import torch
from torch import nn
from torch.nn import functional as F

from hasnas_optuna import ConfigError
from hasnas_optuna.architecture import Architecture, Cell
from hasnas_optuna.cim import load_hardware
from hasnas_optuna.config import StudyConfig
from hasnas_optuna.data import DigitsDataModule
from hasnas_optuna.export import (
    export_trial,
    load_quantized_network,
    quantized_arrays,
    run_nir,
    save_quantized,
    to_nir,
)
from hasnas_optuna.network import _ConvBN, build_network, release_neurons
from hasnas_optuna.objective import HasnasObjective
from hasnas_optuna.quantization import (
    Precision,
    adc_conv2d,
    adc_convert,
    adc_linear,
    deployed_layer,
    fake_quantize,
    quantize_symmetric,
)
from hasnas_optuna.training import SNNClassifier, train_architecture

CELL = Cell.from_matrix("0302 0030 0003 0000")


@pytest.fixture(autouse=True)
def _release_neurons() -> Iterator[None]:
    before = {id(n) for n in snntorch.SpikingNeuron.instances}
    yield
    snntorch.SpikingNeuron.instances[:] = [n for n in snntorch.SpikingNeuron.instances if id(n) in before]


def small(channels: int = 8, hidden: int = 0, encoding: str = "direct") -> Architecture:
    return Architecture(input_shape=(1, 8, 8), num_classes=10, cell_a=CELL, cell_b=CELL, channels=channels,
                        hidden_features=hidden, timesteps=4, encoding=encoding)


def trained_like(arch: Architecture, seed: int) -> nn.Module:
    """Random weights and random batch-norm statistics, as after training."""
    torch.manual_seed(seed)
    net = build_network(arch)
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert module.running_mean is not None and module.running_var is not None
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            nn.init.uniform_(module.weight, -1.5, 1.5)  # some negative scales too
            nn.init.uniform_(module.bias, -0.3, 0.3)
    return net


# -- the quantised layer against integer arithmetic by hand ------------------------------------------

def test_quantised_conv_equals_integer_arithmetic_by_hand() -> None:
    layer = _ConvBN(2, 2, 1)
    conv, bn = layer[0], layer[1]
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[0.4, -1.0], [0.25, 0.75]]).reshape(2, 2, 1, 1))
        bn.weight.copy_(torch.tensor([1.0, 3.0]))
        bn.bias.copy_(torch.tensor([0.1, -0.2]))
        bn.running_mean.copy_(torch.tensor([0.5, 0.0]))
        bn.running_var.copy_(torch.tensor([4.0, 1.0]))
    bn.eps = 0.0
    # BN scale gamma / sqrt(var) = [0.5, 3]: folded weights [0.2, -0.5] and [0.75, 2.25],
    # biases beta - mean * scale = [0.1 - 0.25, -0.2] = [-0.15, -0.2].
    # 3 bits: |q| <= 3; steps 0.5 / 3 = 1/6 and 2.25 / 3 = 0.75; q = [1, -3] and [1, 3].
    deployed = deployed_layer(layer, Precision(weight_bits=3))
    assert deployed.q.flatten().tolist() == [1.0, -3.0, 1.0, 3.0]
    assert deployed.step.tolist() == pytest.approx([1 / 6, 0.75])
    assert deployed.bias is not None and deployed.bias.tolist() == pytest.approx([-0.15, -0.2])
    # input pixels (spikes of in-channel 0, in-channel 1): (1, 1), (1, 0), (0, 1), (0, 0)
    x = torch.tensor([[[1.0, 1.0], [0.0, 0.0]], [[1.0, 0.0], [1.0, 0.0]]]).unsqueeze(0)
    # integer sums: channel 0 [1 - 3, 1, -3, 0]; channel 1 [1 + 3, 1, 3, 0]
    expected = torch.tensor([[[-2 / 6 - 0.15, 1 / 6 - 0.15], [-3 / 6 - 0.15, -0.15]],
                             [[4 * 0.75 - 0.2, 0.75 - 0.2], [3 * 0.75 - 0.2, -0.2]]]).unsqueeze(0)
    layer.precision = Precision(weight_bits=3)
    assert torch.allclose(layer.eval()(x), expected, atol=1e-6)
    # an ADC that converts 1-row partial sums exactly changes nothing
    layer.precision = Precision(weight_bits=3, adc=True, adc_bits=1, rows_per_read=1, crossbar_size=2)
    assert torch.allclose(layer(x), expected, atol=1e-6)


def test_fake_quantisation_is_straight_through_and_per_layer_shares_one_step() -> None:
    weight = torch.tensor([[0.9, -0.3], [0.1, 0.05]], requires_grad=True)
    out = fake_quantize(weight, 2, "per_layer")  # one step 0.9 for the layer: levels -0.9, 0, 0.9
    assert out.detach().tolist() == [[pytest.approx(0.9), 0.0], [0.0, 0.0]]
    out.sum().backward()
    assert weight.grad is not None and weight.grad.tolist() == [[1.0, 1.0], [1.0, 1.0]]
    q, step = quantize_symmetric(weight, 2, "per_channel")  # per channel: steps 0.9 and 0.1
    assert q.tolist() == [[1.0, 0.0], [1.0, 1.0]] and step.tolist() == pytest.approx([0.9, 0.1])


@pytest.mark.parametrize("bits", [2, 3, 4, 6, 8])
@pytest.mark.parametrize("granularity", ["per_channel", "per_layer"])
def test_each_layer_holds_at_most_2_to_the_weight_bits_distinct_values(bits: int, granularity: str) -> None:
    net = trained_like(small(hidden=16), seed=bits)
    net.set_precision(Precision(weight_bits=bits, granularity=granularity)).eval()  # type: ignore[operator]
    layers = net.deployed_layers()  # type: ignore[operator]
    assert len(layers) == len(small(hidden=16).to_network().layers)
    for layer in layers.values():
        weight = layer.q * layer.step.reshape(-1, *([1] * (layer.q.dim() - 1)))
        assert torch.unique(layer.q).numel() <= 2 ** bits
        assert float(layer.q.abs().max()) <= 2 ** (bits - 1) - 1
        if granularity == "per_layer":  # one step: the stored weights themselves take few values
            assert torch.unique(weight).numel() <= 2 ** bits


# -- the ADC ------------------------------------------------------------------------------------------

def test_adc_rounds_and_clips_as_computed_by_hand() -> None:
    # 2 bits/cell, 2 rows per read: partial sums in [0, 2 * 3] = [0, 6]; a 2-bit ADC has levels 0, 2, 4, 6
    p = Precision(weight_bits=4, bits_per_cell=2, rows_per_read=2, crossbar_size=4, adc_bits=2)
    assert p.adc_range == 6 and p.adc_step == 2.0
    sums = torch.tensor([0.0, 0.9, 1.0, 3.0, 4.9, 5.0, 6.0, 7.5])
    assert adc_convert(sums, p).tolist() == [0.0, 0.0, 2.0, 4.0, 4.0, 6.0, 6.0, 6.0]
    # a 3-bit ADC has 8 levels for 7 integer values: exact
    assert torch.equal(adc_convert(sums[:7], p.replace(adc_bits=3)), sums[:7])


def test_adc_layer_against_slices_by_hand() -> None:
    # 4-bit weights q = [5, -7, 2, 0] stored with offset 8: u = 13, 1, 10, 8 = 0b1101, 0b0001, 0b1010, 0b1000;
    # 2 bits per cell: slices (low, high) = (1, 3), (1, 0), (2, 2), (0, 2)
    q = torch.tensor([[5.0, -7.0, 2.0, 0.0]])
    x = torch.tensor([[[1.0], [1.0], [1.0], [1.0]]])
    p = Precision(weight_bits=4, bits_per_cell=2, rows_per_read=2, crossbar_size=4, adc_bits=2)
    # reads: rows 0-1 low 1 + 1 = 2, high 3 + 0 = 3 -> ADC 4 (3 rounds up to level 4);
    #        rows 2-3 low 2 + 0 = 2, high 2 + 2 = 4
    # digital: (2 + 2) * 1 + (4 + 4) * 4 - 8 * 4 inputs = 4 + 32 - 32 = 4 (the exact sum is 0)
    assert adc_linear(x, q, p).flatten().tolist() == [4.0]
    assert adc_linear(x, q, p.replace(adc_bits=3)).flatten().tolist() == [0.0]


def test_lossless_adc_equals_the_convolution_and_a_coarse_one_does_not() -> None:
    torch.manual_seed(0)
    spikes = (torch.rand(3, 20, 6, 6) < 0.3).float()
    q, _ = quantize_symmetric(torch.randn(7, 20, 3, 3), 5)
    exact = F.conv2d(spikes, q, padding=1)
    lossless = Precision(weight_bits=5, adc=True, adc_bits=7, rows_per_read=64, crossbar_size=128)  # 64 <= 127
    assert torch.equal(adc_conv2d(spikes, q, lossless, padding=1), exact)
    coarse = adc_conv2d(spikes, q, lossless.replace(adc_bits=3), padding=1)
    assert not torch.equal(coarse, exact)
    # the analog stem image goes in as input_bits bit planes: exact up to the 12-bit input quantisation
    image = torch.rand(2, 1, 6, 6)
    analog = adc_conv2d(image, q[:, :1], lossless.replace(input_bits=12), padding=1, analog=True)
    assert torch.allclose(analog, F.conv2d(image, q[:, :1], padding=1), atol=16 * 9 / 4095)


# -- training -----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_8_bit_training_is_within_one_point_of_float_on_digits() -> None:
    """Mean test accuracy over three seeds (one run's trajectory alone moves it by about a point)."""
    arch = small()
    gaps, floats = [], []
    for seed in (0, 1, 2):
        float_run = train_architecture(arch, DigitsDataModule(seed=seed), epochs=3, seed=seed)
        quantised = train_architecture(arch, DigitsDataModule(seed=seed), epochs=3, seed=seed,
                                       precision=Precision(weight_bits=8))
        assert float_run.test_accuracy is not None and quantised.test_accuracy is not None
        floats.append(float_run.test_accuracy)
        gaps.append(quantised.test_accuracy - float_run.test_accuracy)
    assert min(floats) > 0.85
    assert abs(sum(gaps) / len(gaps)) <= 0.01


def test_adc_eval_reports_both_accuracies() -> None:
    result = train_architecture(small(channels=4), DigitsDataModule(), epochs=1, seed=0,
                                precision=Precision(weight_bits=4, adc_bits=3), adc="eval")
    assert result.ideal_val_accuracy is not None and result.ideal_test_accuracy is not None
    assert result.test_accuracy is not None and result.ideal_test_accuracy != result.test_accuracy


# -- one definition: config, objective, export ----------------------------------------------------------

@pytest.mark.parametrize(("training", "message"), [
    ({"quantize": "int8"}, "training.quantize='int8' is not allowed; use one of true, false, \"per_channel\", "
                           "\"per_layer\""),
    ({"adc_aware": "always"}, "training.adc_aware='always' is not allowed; use one of false, \"eval\", \"train\""),
    ({"quantize": False, "adc_aware": "eval"}, "training.adc_aware='eval' needs quantised weights"),
])
def test_bad_training_precision_is_a_one_line_error(training: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        StudyConfig.from_dict({"training": training})
    assert message in str(info.value) and "\n" not in str(info.value)


def test_differential_chips_quantise_but_cannot_simulate_their_adc() -> None:
    chip = {"weight_encoding": "differential"}
    precision = StudyConfig.from_dict({"hardware": chip}).training.precision(load_hardware(**chip))
    assert precision is not None and precision.weight_bits == 8
    with pytest.raises(ConfigError) as info:
        StudyConfig.from_dict({"hardware": chip, "training": {"adc_aware": "eval"}})
    assert "weight_encoding='differential': the ADC simulation supports only 'offset'" in str(info.value)


def test_precision_comes_from_the_trial_chip() -> None:
    chip = load_hardware().replace(weight_bits=4, bits_per_cell=2, adc_bits=4, rows_per_read=64)
    config = StudyConfig.from_dict({"training": {"adc_aware": "eval"}})
    precision = config.training.precision(chip)
    assert precision is not None
    assert (precision.weight_bits, precision.bits_per_cell, precision.adc_bits, precision.rows_per_read,
            precision.crossbar_size, precision.adc) == (4, 2, 4, 64, 128, False)
    assert StudyConfig.from_dict({"training": {"quantize": False}}).training.precision(chip) is None


def test_export_round_trip_reproduces_the_quantised_network(tmp_path: Path) -> None:
    config = StudyConfig.from_dict({
        "study": {"n_trials": 1, "seed": 3},
        "space": {"channels": [4], "hidden_features": [16], "timesteps": [2], "encodings": ["direct"],
                  "hardware": {"weight_bits": [3], "bits_per_cell": [1], "adc_bits": [5], "crossbar_size": [128]}},
        "training": {"epochs": 1, "pruner": "none"},
    })
    objective = HasnasObjective(config, artifact_dir=tmp_path / "artifacts")
    study = optuna.create_study(direction="maximize")
    study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    assert trial.user_attrs["trained"] and trial.user_attrs["precision"]["weight_bits"] == 3
    assert objective.artifact_store is not None
    written = export_trial(study, tmp_path / "out", artifact_store=objective.artifact_store, trial_number=0)
    assert "quantized" in written
    with np.load(written["quantized"]) as data:
        arrays = {key: data[key] for key in data.files}
    arch = Architecture.from_dict(trial.user_attrs["architecture"])
    network = arch.to_network()
    for layer in network.layers:
        q = arrays[f"{layer.name}.q"]
        assert q.dtype == np.int8 and np.abs(q).max() <= 3
    # what is stored: every weight, plus one bias per output channel of each conv and of fc_out
    biases = sum(layer.out_channels for layer in network.layers if layer.name != "fc_hidden")
    assert int(arrays["stored_numbers"]) == network.params + biases
    # ... which is what the cost model counts as the chip's memory
    assert int(arrays["stored_numbers"]) == network.memory_params == trial.user_attrs["cost/memory_params"]
    # the network rebuilt from the integers answers exactly what the trained one answered
    net = load_quantized_network(written["architecture"], written["weights"], written["quantized"])
    data = DigitsDataModule(seed=config.seed)
    data.setup("test")
    correct = total = 0
    with torch.no_grad():
        for images, labels in data.test_dataloader():
            correct += int((net(images).argmax(1) == labels).sum())
            total += len(labels)
    assert correct / total == pytest.approx(trial.user_attrs["test_accuracy"], abs=1e-6)
    # and the NIR graph holds q * step, with the precision in its metadata
    graph = to_nir(net)
    assert json.loads(json.dumps(graph.metadata["precision"]))["weight_bits"] == 3
    stem = graph.nodes["stem"]
    ratio = stem.weight / np.asarray(stem.metadata["step"]).reshape(-1, 1, 1, 1)
    assert np.allclose(ratio, np.round(ratio), atol=1e-4)
    images = torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(run_nir(graph, images).mean(0), net(images), atol=1e-4)
    release_neurons(net)


def test_saved_integers_reload_bit_for_bit(tmp_path: Path) -> None:
    arch = small(hidden=16, encoding="rate")
    net = trained_like(arch, seed=1)
    net.set_precision(Precision(weight_bits=4, granularity="per_layer")).eval()  # type: ignore[operator]
    torch.save(net.state_dict(), tmp_path / "weights.pt")
    save_quantized(net, tmp_path / "q.npz")  # type: ignore[arg-type]
    again = load_quantized_network(arch, tmp_path / "weights.pt", tmp_path / "q.npz")
    torch.manual_seed(5)
    images = torch.rand(4, 1, 8, 8)
    torch.manual_seed(7)
    first = net(images)
    torch.manual_seed(7)
    assert torch.equal(again(images), first)
    assert set(quantized_arrays(again)) == set(quantized_arrays(net))  # type: ignore[arg-type]


def test_classifier_trains_with_the_precision_it_was_given() -> None:
    module = SNNClassifier(small(), precision=Precision(weight_bits=2))
    assert module.network.precision == Precision(weight_bits=2)
    assert all(layer.precision == Precision(weight_bits=2) for layer in module.network.crossbar_layers().values())
    release_neurons(module)


def test_adc_aware_training_matches_plain_qat_when_the_adc_is_lossless() -> None:
    """``adc_aware = "train"``: through a lossless ADC, forward and straight-through gradients are plain QAT's."""
    torch.manual_seed(3)
    layer = _ConvBN(3, 4, 3).train()
    spikes = (torch.rand(5, 3, 6, 6) < 0.4).float()
    grads = []
    outputs = []
    for precision in (Precision(weight_bits=4), Precision(weight_bits=4, adc=True, adc_bits=5, rows_per_read=16)):
        layer.precision = precision
        layer.zero_grad()
        out = layer(spikes)
        out.square().sum().backward()
        outputs.append(out.detach())
        grads.append(layer[0].weight.grad.clone())
    assert torch.allclose(outputs[0], outputs[1], atol=1e-4)
    assert torch.allclose(grads[0], grads[1], rtol=1e-3, atol=1e-3)
    layer.precision = Precision(weight_bits=4, adc=True, adc_bits=2, rows_per_read=16)  # lossy: still trains
    layer.zero_grad()
    layer(spikes).square().sum().backward()
    assert layer[0].weight.grad is not None and bool(torch.isfinite(layer[0].weight.grad).all())
