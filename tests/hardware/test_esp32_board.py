"""The ESP32 board from config.json: the pin map checked with one-line errors, the relays
opened first thing at boot, a kind of meter one entry of one table."""
import argparse
import json
import time

import board_sim  # tools/simfs/board_sim.py, on sys.path through conftest.py
import machine
import pytest

from chargepoint.hardware import esp32
from chargepoint.hardware.meters import _Register
from tools import sim


class Coil:
    def __init__(self):
        self.levels = []

    def drive(self, level):
        self.levels.append(level)


def test_boot_opens_every_configured_contactor_output_first(tmp_path):
    coils = {pin: Coil() for pin in (26, 27, 18)}
    for pin, coil in coils.items():
        machine.wire(pin, coil)
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"hardware": {"connectors": 2, "connector": [
        {"relay": [26, 27]},
        {"pilot_pwm": 4, "pilot_adc": 39, "relay": 18, "meter": {"type": "s0", "pin": 15}}]}}))
    assert esp32.open_relays(str(cfg)) == [26, 27, 18]
    assert all(c.levels == [0] for c in coils.values())
    assert esp32.open_relays(str(tmp_path / "missing.json")) == [26]  # the default wiring


@pytest.mark.parametrize("connector,words", [
    ({"pilot_adc": 25}, "connector[0].pilot_adc: GPIO 25 is not an ADC1 pin"),
    ({"relay": [1, 2, 3]}, "connector[0].relay: one or two GPIOs"),
    ({"relay": "26"}, "expected a GPIO number"),
    ({"meter": {"type": "abb"}}, "connector[0].meter: expected an object with type one of"),
    ({"meter": {"type": "s0", "uart": 2}}, "unknown key uart"),
    ({"meter": {"type": "sdm120", "tx": None}}, "connector[0].meter.tx: expected a GPIO number"),
    ({"meter": {"type": "ct", "adc": 25}}, "connector[0].meter.adc: GPIO 25 is not an ADC1"),
    ({"lock": {"motor": 1}}, "connector[0].lock"),
    ({"colour": "red"}, "unknown key colour"),
])
def test_pin_map_mistakes_are_one_line(connector, words):
    with pytest.raises(esp32.BoardError) as e:
        esp32.connector_options({"connector": [connector]}, 0)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_a_second_connector_needs_its_own_pins():
    with pytest.raises(esp32.BoardError) as e:
        esp32.connector_options({"connectors": 2, "connector": [{}, {"relay": 18}]}, 1)
    assert "connector[1].pilot_pwm: required" in str(e.value)


def test_meter_options_get_their_kinds_defaults():
    meter = esp32.connector_options({"connector": [{"meter": {"type": "sdm120", "slave": 7}}]},
                                    0)["meter"]
    assert meter == {"type": "sdm120", "uart": 2, "tx": 17, "rx": 16, "de": None, "slave": 7,
                     "baud": 9600}
    assert esp32.connector_options({}, 0)["meter"]["de"] == 4  # the default board's DE pin


def offered_by_the_simulator(monkeypatch):
    """tools/sim.py's --meter choices."""
    choices = []
    add = argparse.ArgumentParser.add_argument

    def spy(parser, *flags, **kwargs):
        if "--meter" in flags:
            choices.extend(kwargs["choices"])
        return add(parser, *flags, **kwargs)
    monkeypatch.setattr(argparse.ArgumentParser, "add_argument", spy)
    with pytest.raises(sim.UsageError):
        sim.parse_args([])
    return choices


def test_a_kind_of_meter_is_one_entry_of_one_table(monkeypatch):
    """esp32.METERS is every kind: the checker accepts them and only them, each entry builds
    its driver, the simulated board has a model for each (board_sim.METERS) and the simulator
    offers each."""
    kinds = set(esp32.METERS)
    assert set(board_sim.METERS) == kinds
    assert sorted(offered_by_the_simulator(monkeypatch)) == sorted(kinds)
    with pytest.raises(esp32.BoardError) as e:
        esp32.connector_options({"connector": [{"meter": {"type": "abb"}}]}, 0)
    assert str(e.value).endswith("type one of " + ", ".join(sorted(kinds)))
    for kind in kinds:
        machine.unwire()
        wired = board_sim.pin_map(1, kind, False)
        options = esp32.connector_options({"connectors": 2, "connector": [{}, wired]}, 1)
        assert options["meter"] == wired["meter"]  # the simulated board's are complete
        model = board_sim.METERS[kind](options["meter"], {})
        meter = esp32.METERS[kind][1](options["meter"], 1, {})
        assert isinstance(meter, _Register) and meter.energy_wh() == 0  # a meter, unread
        model.run(16.0, 3600.0)  # an hour at 16 A: a register of the meter's own counts it
        assert model.fault == "none"
        assert model.register() is None or model.register() >= 3680.0


def test_a_new_kind_of_meter_is_only_its_entry(monkeypatch, ticks, sleep):
    """Checked with its own defaults and pins, built by its own function, named in the boot
    notification: nothing else in the board knows the kinds."""
    class Pzem(_Register):
        def poll(self):
            pass

    built = []

    def build(m, i, buses):
        built.append((m, i))
        return Pzem()
    monkeypatch.setitem(esp32.METERS, "pzem", ((("uart", 1, esp32._VALUE),
                                                ("tx", 10, esp32._GPIO)), build))
    monkeypatch.setattr(time, "ticks_ms", ticks, raising=False)  # the drivers' clock
    monkeypatch.setattr(time, "sleep_ms", sleep, raising=False)
    with pytest.raises(esp32.BoardError) as e:
        esp32.connector_options({"connector": [{"meter": {"type": "pzem", "tx": "10"}}]}, 0)
    assert "connector[0].meter.tx: expected a GPIO number" in str(e.value)
    board = esp32.build({"connector": [{"meter": {"type": "pzem", "uart": 2}}], "rfid": None},
                        {"id": "CP001"})
    board.guard.stop()
    assert built == [({"type": "pzem", "uart": 2, "tx": 10}, 0)]
    assert board.info["meterType"] == "Pzem" and "pzem" in esp32.METERS
