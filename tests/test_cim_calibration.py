"""The cost model against the simulator runs it is calibrated on.

NeuroSim V1.4: 89 runs of 16 networks (benchmarks/data/neurosim_v14_runs.json), fitted by
benchmarks/cim_calibration.py. Tolerances come from its leave-one-network-out cross-validation
(benchmarks/RESULTS.md): the in-sample totals must stay inside the worst held-out errors, and the
per-layer numbers inside what held-out layers reach. SpikeSim: its ELA script's VGG9 demo.
"""

from __future__ import annotations

import dataclasses
from functools import cache
from typing import Any

import pytest
from cim_reference import NETWORKS, SPIKESIM_RUNS, ReferenceRun

from benchmarks import cim_calibration as calibration
from hasnas_optuna.cim import CostReport, Network, estimate_cost, load_hardware


@cache
def runs() -> tuple[dict[str, Network], list[calibration.Run]]:
    return calibration.load_runs()


def run_ids(node: int | None = None) -> list[str]:
    return [r.run_id for r in runs()[1] if node is None or r.node == node]


def score_of(run_id: str) -> calibration.Score:
    networks, all_runs = runs()
    run = next(r for r in all_runs if r.run_id == run_id)
    return calibration.score(run, networks[run.network], calibration.chip_of(run))


# Worst held-out error of the cross-validation at 22 and 32 nm (area 7.9 %, energy 14.6 %,
# latency 12.1 %), rounded up; at 65 nm (9 runs) the worst in-sample error of the fitted runs.
TOTALS = {22: (0.08, 0.15, 0.13), 32: (0.08, 0.15, 0.13), 65: (0.06, 0.10, 0.17)}


@pytest.mark.parametrize("run_id", [i for i in run_ids() if i not in calibration.NOT_FITTED])
def test_every_neurosim_run_in_sample(run_id: str) -> None:
    s = score_of(run_id)
    area, energy, latency = TOTALS[s.run.node]
    assert abs(s.area) <= area
    assert abs(s.energy) <= energy
    assert abs(s.latency) <= latency


def test_the_run_left_out_of_the_energy_fit_is_still_scored() -> None:
    # F: the only 65 nm run at crossbar 64 with 4-bit cells (docs/cost-model.md): area is fitted,
    # energy and latency are an out-of-sample check of that corner, and it shows
    s = score_of("F-vgg9conv")
    assert abs(s.area) <= 0.06
    assert 0.5 < s.energy < 1.0
    assert -0.2 < s.latency < 0.0


# Three shapes: 1x1-heavy with a stride-2 stem, 5x5 kernels (rows up to 1 600), linear only.
# Held out, layers that carry >= 5 % of their run's dynamic energy (latency) are within 24 % (64 %)
# at worst, 90 % of them within 9 % (9 %) (benchmarks/RESULTS.md); the worst are small linear
# layers. Here: every such layer within that worst, and a network's median such layer within 12 %.
PER_LAYER = ("mobile_pointwise__22nm_cb1_x128__s0.15", "cifar_k5__22nm_cb2_x128__s0.15",
             "mlp3__32nm_cb1_x128__s0.15", "mobile_pointwise__65nm_cb2_x128__s0.15")
LAYER_WORST = {"energy": 0.25, "latency": 0.65}
LAYER_TYPICAL = {"energy": 0.12, "latency": 0.12}


@pytest.mark.parametrize("run_id", PER_LAYER)
def test_per_layer_energy_and_latency_against_neurosim(run_id: str) -> None:
    s = score_of(run_id)
    assert s.run.per_layer is not None
    for quantity, key, errors in (("energy", "read_dynamic_energy_pj", s.layers_energy),
                                  ("latency", "read_latency_ns", s.layers_latency)):
        values = [layer[key] for layer in s.run.per_layer]
        big = [abs(e) for e, v in zip(errors, values, strict=True) if v >= 0.05 * sum(values)]
        assert len(big) >= 2
        assert max(big) <= LAYER_WORST[quantity], (quantity, big)
        assert sorted(big)[(len(big) - 1) // 2] <= LAYER_TYPICAL[quantity], (quantity, big)
        assert max(abs(e) for e in errors) < 1.0  # every layer, however small, within a factor of two


def test_model_reproduces_neurosim_floorplan_and_duplication() -> None:
    # tile side, tiles per layer and NeuroSim's speed-up (PE x subarray copies) in every run
    networks, all_runs = runs()
    for run in all_runs:
        if run.per_layer is None:
            continue
        report = calibration.cost_run(run, networks[run.network], calibration.chip_of(run))
        raw = next(r for r in calibration_data()["per_layer_runs"] if r["run_id"] == run.run_id)
        assert [layer.tiles for layer in report.layers] == raw["tiles_per_layer"], run.run_id
        assert [layer.duplication for layer in report.layers] == raw["speedup_per_layer"], run.run_id


@cache
def calibration_data() -> dict[str, Any]:
    import json

    return json.loads(calibration.DATA.read_text())


def test_calibration_reproduces_the_presets() -> None:
    networks, all_runs = runs()
    fits = calibration.fit_all(networks, all_runs)
    for node, fit in fits.items():
        tech = load_hardware(f"neurosim-{node}nm").technology
        fitted = calibration.technology_of(fit, tech)
        for name in calibration.FITTED:
            got, want = getattr(fitted, name), getattr(tech, name)
            if isinstance(want, dict):
                assert set(got) == set(want)
                for key in want:
                    assert got[key] == pytest.approx(want[key], rel=1e-3, abs=1e-9), (node, name, key)
            else:
                assert got == pytest.approx(want, rel=1e-3, abs=1e-9), (node, name)
        assert fit.constants  # every fitted constant has a source naming the runs
        for name in calibration.FITTED:
            assert "NeuroSim" in tech.sources[name] or name == "layout_factor", (node, name)


def test_cross_validation_meets_the_targets_at_22_and_32_nm() -> None:
    networks, all_runs = runs()
    held_out = [s for s in calibration.cross_validate(networks, all_runs) if s.run.node in (22, 32)]
    assert len(held_out) == 73 + 7  # per-layer runs, and totals-only runs of snn4m and vgg9conv
    for quantity, (median, worst) in calibration.TARGETS.items():
        _, got_median, got_worst, where = calibration.summary(held_out, quantity)
        assert got_median <= median, quantity
        assert abs(got_worst) <= worst, (quantity, where)


def test_neurons_are_their_own_component_outside_the_calibration() -> None:
    networks, all_runs = runs()
    run = all_runs[0]
    report = calibration.cost_run(run, networks[run.network], calibration.chip_of(run))
    neurons = sum(layer.energy_uj["neurons"] for layer in report.layers)
    assert neurons > 0  # LIF updates and membrane traffic are costed ...
    assert calibration.compared(report)[1] == pytest.approx(report.energy_uj - neurons)  # ... not fitted
    hw = load_hardware("neurosim-22nm")
    assert "no neurons" in hw.technology.sources["neuron_update_pj"]


def _spikesim(ref: ReferenceRun) -> CostReport:
    hw = load_hardware(ref.preset, default_spike_rate=ref.spike_rate, **ref.overrides)
    return estimate_cost(NETWORKS[ref.network](), hw, timesteps=ref.timesteps)


@pytest.mark.parametrize("ref", SPIKESIM_RUNS, ids=lambda r: r.run)
def test_spikesim_vgg9_demo_within_two_percent(ref: ReferenceRun) -> None:
    report = _spikesim(ref)
    assert report.area_mm2 == pytest.approx(ref.area_mm2, rel=0.02)
    assert report.energy_uj == pytest.approx(ref.energy_uj, rel=0.02)
    assert report.latency_ms == pytest.approx(ref.latency_ms, rel=0.02)


def test_spikesim_reproduces_the_ela_formulas_exactly() -> None:
    # Hand-evaluated from SpikeSim's ELA script: 48 PEs on 6 tiles of 547 490.6 um^2, buffers
    # 16.2602 um^2 per input neuron (158 720) and per neuron of the first 5 layers (139 264);
    # 3 840 PE cycles x 828.49 pJ x T; latency (4 096 + 0.75 x 155 648) x T x 104 ns.
    report = _spikesim(SPIKESIM_RUNS[0])
    tile = 440199.344 + 209.5533590625 * 512 + 8 * (9 * 26.2144 + 8 * 739.533)
    neurons = 0.7391 * 22 * (158720 + 139264)
    assert report.area_mm2 == pytest.approx((6 * tile + neurons) / 1e6, rel=1e-9)
    cycle_pj = 157.12 + 403.24 + 5.096 + 0.0001472 + 72 * 1.76423 + 64 * 2.125085
    assert report.energy_uj == pytest.approx(5 * 3840 * cycle_pj / 1e6, rel=1e-9)
    assert report.latency_ms == pytest.approx(5 * (4096 + 0.75 * 155648) * 104 / 1e6, rel=1e-12)
    assert report.energy_leakage_uj == 0.0


def test_spikesim_is_untouched_by_the_neurosim_terms() -> None:
    tech = load_hardware("spikesim-65nm").technology
    neurosim_terms = ("crossbar_fixed_um2", "chip_fixed_um2", "row_drive_pj", "column_read_pj", "shift_add_pj",
                      "psum_hop_pj", "input_hop_pj", "vector_cycles_per_output", "vector_cycles_per_row")
    assert all(getattr(tech, name) == 0.0 for name in neurosim_terms)
    assert dataclasses.replace(tech, psum_hop_pj=1.0) != tech  # the terms exist, and are zero here
