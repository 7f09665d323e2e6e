"""Counting, accounting and the batch path of the cost model, against hand-computed values."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
from cim_reference import snn4m, vgg9conv

from hasnas_optuna.cim import (
    AREA_PARTS,
    ENERGY_PARTS,
    Budgets,
    Layer,
    Network,
    NetworkBatch,
    estimate_cost,
    estimate_costs,
    list_presets,
    load_hardware,
)


def small_net(encoding: str = "direct") -> Network:
    return Network(
        (Layer.conv(3, 64, kernel_size=3, input_size=(32, 32), padding=1, pool_after=2),
         Layer.linear(16384, 10)),
        name="vgg-small", timesteps=5, encoding=encoding,
    )


def test_mapping_counts_by_hand() -> None:
    report = estimate_cost(small_net(), load_hardware("neurosim-22nm"))
    conv, fc = report.layers
    # conv: 27 rows x (64 x 8 slices = 512) columns -> 1 x 4 crossbars of 128 x 128.
    # NeuroSim floorplan: widest layer 512 columns -> tile 512 cells = 4 x 4 crossbars.
    assert (conv.crossbars, conv.tiles, conv.crossbars_allocated, conv.duplication) == (4, 1, 16, 4)
    # fc: 16 384 rows x 80 columns -> 128 x 1 crossbars, 32 tiles of 16 -> 512, duplicated x4.
    assert (fc.crossbars, fc.tiles, fc.crossbars_allocated, fc.duplication) == (128, 32, 512, 4)
    assert report.memory_params == 27 * 64 + 16384 * 10
    assert report.memory_bits == 8 * report.memory_params
    assert report.crossbars == 528
    # membranes: 64 x 32 x 32 + 10 neurons, 16 bits each
    assert report.neuron_state_bits == 16 * (64 * 1024 + 10)
    assert report.memory_cells == 8 * report.memory_params  # 8-bit weights on 1-bit cells
    # every read converts all 128 columns: conv reads 1024 positions x 8 bit planes x 4 crossbars once
    assert conv.conversions == 1024 * 8 * 512
    assert fc.conversions == 5 * 128 * 80  # 5 timesteps x 128 row blocks x the 80 columns holding weights


def test_snn4m_floorplan_matches_neurosim() -> None:
    # NeuroSim V1.4 allocated 52 tiles x 64 subarrays = 3 328 for snn4m (cim.md 3.2).
    report = estimate_cost(snn4m(), load_hardware("neurosim-22nm"), timesteps=1)
    assert report.crossbars == 3328
    assert [layer.tiles for layer in report.layers] == [1, 1, 4, 6, 12, 20, 8]
    assert report.layers[0].duplication == 16 and report.layers[-1].duplication == 8


def test_breakdown_sums_to_totals() -> None:
    for preset in list_presets():
        report = estimate_cost(vgg9conv(), load_hardware(preset), timesteps=4)
        assert sum(layer.energy_total_uj for layer in report.layers) == pytest.approx(report.energy_uj)
        assert sum(layer.area_total_mm2 for layer in report.layers) == pytest.approx(report.area_mm2)
        assert set(report.energy_breakdown()) == set(ENERGY_PARTS)
        assert set(report.area_breakdown()) == set(AREA_PARTS)
        assert report.energy_breakdown()["leakage"] == pytest.approx(report.energy_leakage_uj)


def test_static_first_layer_is_computed_once() -> None:
    hw = load_hardware("neurosim-22nm")
    net = small_net("direct")
    t4, t8 = (estimate_cost(net, hw, timesteps=t) for t in (4, 8))
    assert t4.layers[0].passes == 1 and t8.layers[0].passes == 1
    # crossbar-side energy of the static layer does not grow with T ...
    for part in ("arrays", "adcs", "accumulation"):
        assert t8.layers[0].energy_uj[part] == pytest.approx(t4.layers[0].energy_uj[part])
    # ... while the spiking layer after it runs T times
    assert t8.layers[1].energy_uj["adcs"] == pytest.approx(2 * t4.layers[1].energy_uj["adcs"])
    # rate coding feeds spikes to the first layer: T passes of 1 bit instead of one 8-bit pass
    rate = estimate_cost(small_net("rate"), hw, timesteps=8)
    assert rate.layers[0].passes == 8
    assert rate.layers[0].conversions == pytest.approx(t8.layers[0].conversions)  # 8 x 1 bit = 1 x 8 bits
    without_reuse = estimate_cost(net, hw.replace(reuse_static_input=False), timesteps=8)
    assert without_reuse.layers[0].passes == 8
    assert without_reuse.energy_uj > t8.energy_uj


def test_energy_follows_spike_rate_on_neurosim_only() -> None:
    net = Network(snn4m().layers, encoding="rate")
    neurosim = load_hardware("neurosim-22nm")
    low, high = (estimate_cost(net, neurosim, timesteps=4, spike_rates=[r] * 7) for r in (0.05, 0.3))
    assert high.energy_uj > low.energy_uj
    assert high.area_mm2 == low.area_mm2 and high.latency_ms == low.latency_ms
    spikesim = load_hardware("spikesim-65nm")
    a, b = (estimate_cost(net, spikesim, timesteps=4, spike_rates=[r] * 7) for r in (0.05, 0.3))
    assert a.energy_uj == pytest.approx(b.energy_uj)
    # measured rates per layer override the preset default; a mapping may give only some layers,
    # a None in a list falls through to the layer's own rate, then to the preset's default
    partial = estimate_cost(net, neurosim, timesteps=4, spike_rates={3: 0.9})
    assert [layer.spike_rate for layer in partial.layers][2:4] == [0.15, 0.9]
    own = Network((Layer.linear(64, 32, spike_rate=0.4), Layer.linear(32, 10)), encoding="rate")
    listed = estimate_cost(own, neurosim, timesteps=2, spike_rates=[None, 0.2])
    assert [layer.spike_rate for layer in listed.layers] == [0.4, 0.2]


def test_skipping_silent_row_blocks_saves_energy_at_low_rates() -> None:
    hw = load_hardware("neurosim-22nm", rows_per_read=16)
    net = Network(vgg9conv().layers, encoding="rate")
    dense = estimate_cost(net, hw, timesteps=2, spike_rates=[0.01] * 7)
    skip = estimate_cost(net, hw.replace(skip_silent_row_blocks=True), timesteps=2, spike_rates=[0.01] * 7)
    assert skip.energy_uj < dense.energy_uj
    assert skip.layers[1].conversions == pytest.approx(dense.layers[1].conversions * (1 - 0.99 ** 16))


def test_latency_schedules() -> None:
    net = Network(vgg9conv().layers, encoding="rate")
    hw = load_hardware("neurosim-22nm")
    seq4, seq8 = (estimate_cost(net, hw, timesteps=t).latency_ms for t in (4, 8))
    assert seq8 == pytest.approx(2 * seq4)
    pipe = estimate_cost(net, hw.replace(schedule="pipelined"), timesteps=8)
    times = [layer.latency_ms / 8 for layer in pipe.layers]
    assert pipe.latency_ms == pytest.approx(sum(times) + 7 * max(times))
    assert pipe.latency_ms < seq8
    serial = estimate_cost(net, load_hardware("spikesim-65nm"), timesteps=5)
    per_layer = [layer.latency_ms for layer in serial.layers]
    assert serial.latency_ms == pytest.approx(0.75 * sum(per_layer[:-1]) + per_layer[-1])


def test_crossbar_concurrency_serialises_reads() -> None:
    hw = load_hardware("neurosim-22nm")
    # crossbar reads alone: no buffer time per input vector
    hw = hw.replace(technology=dataclasses.replace(
        hw.technology, vector_cycles_per_output=0.0, vector_cycles_per_row=0.0))
    net = Network(vgg9conv().layers, encoding="rate")
    free = estimate_cost(net, hw, timesteps=1)
    one = estimate_cost(net, hw.replace(crossbar_concurrency=1), timesteps=1)
    # layer 2 (64 -> 128, 576 x 1024 cells) needs 5 x 8 = 40 crossbars read one after another
    assert one.layers[2].latency_ms == pytest.approx(40 * free.layers[2].latency_ms)
    # layer 0 is duplicated 16 times: with one crossbar at a time the copies do not help
    assert free.layers[0].duplication == 16
    assert one.layers[0].latency_ms == pytest.approx(16 * 4 * free.layers[0].latency_ms)


def test_hardware_knobs_move_costs_the_right_way() -> None:
    net = snn4m()
    base = estimate_cost(net, load_hardware(), timesteps=4)
    two_bit = estimate_cost(net, load_hardware(bits_per_cell=2), timesteps=4)
    four_bit_adc = estimate_cost(net, load_hardware(adc_bits=4), timesteps=4)
    differential = estimate_cost(net, load_hardware(weight_encoding="differential"), timesteps=4)
    assert two_bit.area_mm2 < base.area_mm2 and two_bit.energy_uj < base.energy_uj
    assert four_bit_adc.energy_uj < base.energy_uj and four_bit_adc.area_mm2 < base.area_mm2
    assert differential.crossbars > base.crossbars
    assert estimate_cost(net, load_hardware(weight_bits=4), timesteps=4).memory_bits == 4 * net.params


def test_batch_matches_single_network_path() -> None:
    rng = random.Random(7)
    nets = []
    for _ in range(40):
        c = rng.choice([8, 16, 48, 96])
        layers = [Layer.conv(3, c, kernel_size=3, input_size=(32, 32), padding=1)]
        for _ in range(rng.randint(0, 6)):
            k = rng.choice([1, 3])
            layers.append(Layer.conv(c, c, kernel_size=k, input_size=(32, 32), padding=k // 2,
                                     spike_rate=rng.choice([None, 0.05, 0.4])))
        layers.append(Layer.conv(c, 2 * c, kernel_size=3, input_size=(32, 32), padding=1, pool_after=4))
        layers.append(Layer.linear(2 * c * 64, 10))
        nets.append(Network(tuple(layers), encoding="direct"))
    steps = [rng.randint(1, 8) for _ in nets]
    for preset in list_presets():
        hw = load_hardware(preset)
        batch = estimate_costs(nets, hw, timesteps=np.array(steps))
        for i, (net, t) in enumerate(zip(nets, steps, strict=True)):
            single = estimate_cost(net, hw, timesteps=t)
            assert batch.memory_params[i] == single.memory_params
            assert batch.area_mm2[i] == pytest.approx(single.area_mm2, rel=1e-9)
            assert batch.latency_ms[i] == pytest.approx(single.latency_ms, rel=1e-9)
            assert batch.energy_dynamic_uj[i] == pytest.approx(single.energy_dynamic_uj, rel=1e-9)
            assert batch.energy_leakage_uj[i] == pytest.approx(single.energy_leakage_uj, rel=1e-9)


def test_batch_chunks_agree_with_one_pass() -> None:
    net = small_net()
    many = NetworkBatch.from_networks([net] * 2500)
    costs = estimate_costs(many, load_hardware(), timesteps=3)
    assert np.allclose(costs.energy_uj, costs.energy_uj[0])
    assert costs.energy_uj[0] == pytest.approx(estimate_cost(net, load_hardware(), timesteps=3).energy_uj)


def test_budgets_check_and_order() -> None:
    report = estimate_cost(small_net(), load_hardware())
    budgets = Budgets(energy=report.energy_uj / 2, memory=1e9)
    checked = budgets.check(report)
    assert [row[0] for row in checked] == ["memory", "energy"]
    assert checked[1][3] == pytest.approx(1.0)  # twice the budget
    assert "FAIL  energy" in report.format_table(budgets)
    assert "PASS  memory" in report.format_table(budgets)


def test_cache_is_per_hardware_and_bounded() -> None:
    hw = load_hardware()
    report_a = estimate_cost(small_net(), hw)
    report_b = estimate_cost(small_net(), hw.replace(adc_bits=4))
    assert report_a.energy_uj != report_b.energy_uj
    assert hw._cache and dataclasses.replace(hw)._cache == {}
