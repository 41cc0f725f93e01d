"""The ESP32 board from config.json: the pin map checked with one-line errors, the relays
opened first thing at boot."""
import json

import pytest

import machine
from chargepoint.hardware import esp32


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
