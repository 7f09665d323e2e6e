"""Bad networks, presets and hardware files: one clear error naming the field, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hasnas_optuna import ConfigError
from hasnas_optuna.cim import (
    Budgets,
    Hardware,
    Layer,
    Network,
    estimate_cost,
    list_presets,
    load_hardware,
    load_network,
)
from hasnas_optuna.cim._hardware import Technology

CONV = {"type": "conv", "in_channels": 3, "out_channels": 8, "kernel_size": 3, "input_size": [8, 8]}


def parse(layer: dict[str, object]) -> Network:
    return Network.from_dict({"layers": [layer]})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"in_channels": 0}, r"layers\[0\]\.in_channels=0 is out of range; it must be >= 1"),
        ({"out_channels": -4}, r"layers\[0\]\.out_channels=-4 is out of range"),
        ({"input_size": [0, 8]}, r"layers\[0\]\.input_size\[0\]=0 is out of range"),
        ({"kernel_size": 11}, r"kernel_size=11 is larger than its padded input \(8x8 \+ 2\*0 padding\); "
                              r"use kernel_size <= 8"),
        ({"spike_rate": 1.5}, r"layers\[0\]\.spike_rate=1.5 is out of range; it must be in \[0, 1\]"),
        ({"spike_rate": -0.1}, r"spike_rate=-0.1 is out of range"),
        ({"type": "pool"}, r"layers\[0\]\.type='pool' is not a known layer type; use one of conv, linear"),
        ({"stride": "2"}, r"layers\[0\]\.stride='2' must be an integer >= 1"),
        ({"pool_after": 16}, r"pool_after=16 is larger than the layer output 6x6; use pool_after <= 6"),
        ({"kernal_size": 3},
         r"layers\[0\] has unknown field 'kernal_size' \(did you mean 'kernel_size'\?\); allowed fields: "),
    ],
)
def test_bad_layers_name_the_field(change: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse({**CONV, **change})


def test_missing_fields_and_shapes() -> None:
    with pytest.raises(ConfigError, match=r"layers\[0\]\.kernel_size is missing"):
        parse({k: v for k, v in CONV.items() if k != "kernel_size"})
    with pytest.raises(ConfigError, match="'layers' is missing or not a list"):
        Network.from_dict({"name": "x"})
    with pytest.raises(ConfigError, match="network has no layers"):
        Network.from_dict({"layers": []})
    with pytest.raises(ConfigError, match="encoding='spikes' is not allowed; use one of direct, rate, latency"):
        Network.from_dict({"layers": [CONV], "encoding": "spikes"})
    with pytest.raises(ConfigError, match=r"layers\[0\]\.in_features is missing"):
        parse({"type": "linear", "out_features": 10})


def test_malformed_json_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "net.json"
    path.write_text('{"layers": [\n  {"type": "conv",}\n]}')
    with pytest.raises(ConfigError, match=r"net.json: malformed JSON at line 2, column 19"):
        load_network(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_network(tmp_path / "missing.json")


def test_network_json_round_trip(tmp_path: Path) -> None:
    net = Network((Layer.conv(3, 8, kernel_size=3, input_size=(8, 6), stride=2, padding=1, pool_after=2,
                              spike_rate=0.2, name="c"), Layer.linear(24, 10, name="fc")),
                  name="n", timesteps=3, encoding="latency")
    path = tmp_path / "net.json"
    path.write_text(json.dumps(net.to_dict()))
    assert load_network(path) == net


def test_timesteps_and_rates_checked_at_costing() -> None:
    net = parse(CONV)
    hw = load_hardware()
    with pytest.raises(ConfigError, match="timesteps is not given"):
        estimate_cost(net, hw)
    with pytest.raises(ConfigError, match="timesteps=0 must be an integer >= 1"):
        estimate_cost(net, hw, timesteps=0)
    with pytest.raises(ConfigError, match=r"spike rate of layer 0 is 2\.0"):
        estimate_cost(net, hw, timesteps=2, spike_rates=[2.0])
    with pytest.raises(ConfigError, match="spike_rates has 2 values but the network has 1 layers"):
        estimate_cost(net, hw, timesteps=2, spike_rates=[0.1, 0.2])


def test_unknown_preset_lists_the_allowed_ones() -> None:
    with pytest.raises(ConfigError) as info:
        load_hardware("neurosim-7nm")
    message = str(info.value)
    assert "unknown hardware preset 'neurosim-7nm'" in message
    for name in list_presets():
        assert name in message


def test_every_technology_number_has_a_source() -> None:
    fields = {f for f in Technology.__dataclass_fields__ if f != "sources"}
    for preset in list_presets():
        tech = load_hardware(preset).technology
        assert set(tech.sources) == fields, preset
        assert all(len(text) > 10 for text in tech.sources.values())


def preset_text(name: str = "neurosim-22nm") -> str:
    from importlib import resources

    return (resources.files("hasnas_optuna.cim") / "presets" / f"{name}.toml").read_text()


def test_user_preset_file_loads_like_a_preset(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(preset_text().replace("adc_bits = 5", "adc_bits = 4").replace(
        'name = "neurosim-22nm"', 'name = "my-chip"'))
    mine = load_hardware(str(path))
    assert mine.name == "my-chip" and mine.adc_bits == 4
    assert mine.technology == load_hardware().technology


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("adc_bits = 5", "adc_bit = 5", r"unknown key 'crossbar.adc_bit' \(did you mean 'adc_bits'\?\); allowed: "),
        ("adc_bits = 5", "adc_bits = 9", r"adc_bits=9 is not in this technology table; use one of 3, 4, 5, 6"),
        ("size = 128", "size = 100", r"crossbar_size=100 is not allowed; use one of 16, 32, 64, 128"),
        ("bits_per_cell = 1", "bits_per_cell = 0", r"bits_per_cell=0 is out of range; it must be an integer "
                                                   r"in \[1, 8\]"),
        ("default_spike_rate = 0.15", "default_spike_rate = 1.2", r"default_spike_rate=1.2 is out of range"),
        ('schedule = "sequential"', 'schedule = "fast"', r"schedule='fast' is not allowed; use one of "
                                                        r"sequential, pipelined, neuron_serial"),
        ("neuron_update_pj = 0.1", "neuron_update_pj = -1",
         r"technology.neuron_update_pj=-1 is out of range; it must be >= 0"),
        ("neuron_update_pj = 0.1", "neuron_updates_pj = 0.1", r"unknown key 'technology.neuron_updates_pj'"),
        ("[crossbar]", "[crossbars]", r"unknown key 'crossbars' \(did you mean 'crossbar'\?\); allowed top-level keys"),
        ("size = 128", "size = [", r"malformed TOML"),
    ],
)
def test_bad_preset_files_name_the_key(tmp_path: Path, old: str, new: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(preset_text().replace(old, new, 1))
    with pytest.raises(ConfigError, match=message):
        load_hardware(str(path))


def test_replace_validates_knobs() -> None:
    hw = load_hardware()
    with pytest.raises(ConfigError, match="unknown hardware knob 'adc'; known knobs: "):
        hw.replace(adc=4)
    with pytest.raises(ConfigError, match="columns_per_adc=3 must divide crossbar_size=128"):
        hw.replace(columns_per_adc=3)
    assert isinstance(hw.replace(crossbar_size=256, rows_per_read=256), Hardware)


@pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf"), True, "100"])
def test_budgets_must_be_positive_numbers(value: object) -> None:
    with pytest.raises(ConfigError, match=r"budget area=.* must be a number > 0 \(mm2\)"):
        Budgets(area=value)  # type: ignore[arg-type]
