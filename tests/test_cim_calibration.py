"""The cost model against the simulator runs it was calibrated on (tests/cim_reference.py)."""

from __future__ import annotations

import pytest
from cim_reference import NETWORKS, NEUROSIM_RUNS, SPIKESIM_RUNS, ReferenceRun

from hasnas_optuna.cim import estimate_cost, load_hardware


def _report(ref: ReferenceRun):  # type: ignore[no-untyped-def]
    hw = load_hardware(ref.preset, default_spike_rate=ref.spike_rate, **ref.overrides)
    return estimate_cost(NETWORKS[ref.network](), hw, timesteps=ref.timesteps)


@pytest.mark.parametrize("ref", NEUROSIM_RUNS, ids=lambda r: r.run)
def test_neurosim_runs_within_issue_tolerances(ref: ReferenceRun) -> None:
    report = _report(ref)
    assert report.area_mm2 == pytest.approx(ref.area_mm2, rel=0.10)
    assert report.energy_uj == pytest.approx(ref.energy_uj, rel=0.12)
    assert report.latency_ms == pytest.approx(ref.latency_ms, rel=0.30)


@pytest.mark.parametrize("ref", SPIKESIM_RUNS, ids=lambda r: r.run)
def test_spikesim_vgg9_demo_within_two_percent(ref: ReferenceRun) -> None:
    report = _report(ref)
    assert report.area_mm2 == pytest.approx(ref.area_mm2, rel=0.02)
    assert report.energy_uj == pytest.approx(ref.energy_uj, rel=0.02)
    assert report.latency_ms == pytest.approx(ref.latency_ms, rel=0.02)


def test_spikesim_reproduces_the_ela_formulas_exactly() -> None:
    # Hand-evaluated from paper.md 4.1: 48 PEs on 6 tiles of 547 490.6 um^2, buffers
    # 16.2602 um^2 per input neuron (158 720) and per neuron of the first 5 layers (139 264);
    # 3 840 PE cycles x 828.49 pJ x T; latency (4 096 + 0.75 x 155 648) x T x 104 ns.
    report = _report(SPIKESIM_RUNS[0])
    tile = 440199.344 + 209.5533590625 * 512 + 8 * (9 * 26.2144 + 8 * 739.533)
    neurons = 0.7391 * 22 * (158720 + 139264)
    assert report.area_mm2 == pytest.approx((6 * tile + neurons) / 1e6, rel=1e-9)
    cycle_pj = 157.12 + 403.24 + 5.096 + 0.0001472 + 72 * 1.76423 + 64 * 2.125085
    assert report.energy_uj == pytest.approx(5 * 3840 * cycle_pj / 1e6, rel=1e-9)
    assert report.latency_ms == pytest.approx(5 * (4096 + 0.75 * 155648) * 104 / 1e6, rel=1e-12)
    assert report.energy_leakage_uj == 0.0
