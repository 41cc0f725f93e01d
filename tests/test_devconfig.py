"""Device configuration file: defaults, and one clear line for every mistake."""
import json
import os

import pytest

from chargepoint.devconfig import ConfigError, load

PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


@pytest.fixture
def folder(tmp_path):
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_bytes(PEM)
    return tmp_path


def write(folder, cfg):
    path = folder / "config.json"
    path.write_text(cfg if isinstance(cfg, str) else json.dumps(cfg))
    return str(path)


def minimal():
    return {"id": "CP001", "mqtt": {"endpoint": "x-ats.iot.eu-west-1.amazonaws.com"}}


def error(folder, cfg):
    with pytest.raises(ConfigError) as e:
        load(write(folder, cfg))
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_minimal_file_gets_defaults(folder):
    cfg = load(write(folder, minimal()))
    assert cfg == {
        "id": "CP001",
        "transport": "mqtt",
        "websocket": None,
        "mqtt": {"endpoint": "x-ats.iot.eu-west-1.amazonaws.com", "port": 8883,
                 "ca": str(folder / "ca.pem"), "cert": str(folder / "cert.pem"),
                 "key": str(folder / "key.pem"), "keepalive": 300,
                 "topic_in": "{id}/in", "topic_out": "{id}/out", "provision_template": ""},
        "wifi": {"ssid": "", "password": ""},
        "hardware": {"driver": "esp32", "connectors": 1},  # the device's own board
        "repl": False,
    }


def test_the_simulator_names_its_board_driver(folder):
    from tools import sim
    pem = [str(folder / name) for name in ("ca.pem", "cert.pem", "key.pem")]
    a = sim.parse_args(["--id", "CP001", "--broker", "127.0.0.1:8883", "--ca", pem[0],
                        "--cert", pem[1], "--key", pem[2], "--state", str(folder / "state"),
                        "--control", "127.0.0.1:1"])
    fs = sim.prepare_flash(a, 1883)
    assert load(os.path.join(fs, "config.json"))["hardware"]["driver"] == "sim"


def test_repl_is_a_switch(folder):
    cfg = minimal()
    cfg["repl"] = True
    assert load(write(folder, cfg))["repl"] is True
    cfg["repl"] = "yes"
    assert "repl: expected true or false, got a string" in error(folder, cfg)


def test_hardware_options_are_free_form(folder):
    cfg = minimal()
    cfg["hardware"] = {"driver": "esp32", "connectors": 2, "relay_pins": [25, 26]}
    assert load(write(folder, cfg))["hardware"]["relay_pins"] == [25, 26]


def test_der_credentials_are_accepted(folder):
    (folder / "ca.der").write_bytes(b"\x30\x82\x01\x00")
    cfg = minimal()
    cfg["mqtt"]["ca"] = "ca.der"
    assert load(write(folder, cfg))["mqtt"]["ca"].endswith("ca.der")


def test_missing_file(folder):
    with pytest.raises(ConfigError, match="configuration file not found"):
        load(str(folder / "nope.json"))


def test_not_json(folder):
    assert "not valid JSON" in error(folder, "{id: CP001")


def test_wrong_type_names_field_and_expectation(folder):
    cfg = minimal()
    cfg["mqtt"]["port"] = "8883"
    assert error(folder, cfg).endswith("mqtt.port: expected an integer, got a string")
    cfg["mqtt"]["port"] = True
    assert "mqtt.port: expected an integer, got true/false" in error(folder, cfg)


def test_unknown_top_level_key(folder):
    cfg = minimal()
    cfg["wlan"] = {}
    assert "unknown key wlan" in error(folder, cfg)


def test_unknown_mqtt_key(folder):
    cfg = minimal()
    cfg["mqtt"]["keep_alive"] = 60
    assert "unknown key mqtt.keep_alive" in error(folder, cfg)


def test_missing_required_fields(folder):
    assert "missing required field id" in error(folder, {"mqtt": {"endpoint": "x"}})
    assert "missing required field mqtt.endpoint" in error(folder, {"id": "CP001"})
    assert "missing required field mqtt.endpoint" in error(folder, {"id": "CP001", "mqtt": {}})


def test_missing_credential_file(folder):
    (folder / "key.pem").unlink()
    assert "mqtt.key: file " in error(folder, minimal())


def test_credential_neither_pem_nor_der(folder):
    (folder / "cert.pem").write_bytes(b"hello")
    assert "mqtt.cert" in error(folder, minimal())


@pytest.mark.parametrize("bad", ["CP/1", "CP+1", "CP#1", "x" * 129])
def test_bad_charge_point_id(folder, bad):
    cfg = minimal()
    cfg["id"] = bad
    assert ": id: " in error(folder, cfg)


def test_ranges(folder):
    cfg = minimal()
    cfg["mqtt"]["keepalive"] = 1201
    assert "mqtt.keepalive: expected 30..1200" in error(folder, cfg)
    cfg = minimal()
    cfg["hardware"] = {"connectors": 9}
    assert "hardware.connectors: expected 1..8" in error(folder, cfg)
    cfg["hardware"] = {"driver": 3}
    assert "hardware.driver: expected a string" in error(folder, cfg)
    cfg = minimal()
    cfg["mqtt"]["topic_in"] = "a/b/c/d/e/f/g/{id}/in"
    assert "mqtt.topic_in" in error(folder, cfg)


# -- straight to a Central System over a WebSocket --------------------------------------------

KEY = "00112233445566778899AABBCCDDEEFF"


def ws(**section):
    return {"id": "CP001", "transport": "websocket", "websocket": section}


@pytest.mark.parametrize("section,profile", [
    ({"url": "ws://csms.example:9000/ocpp"}, 0),
    ({"url": "ws://csms.example/ocpp", "auth_key": KEY, "security_profile": 1}, 1),
    ({"url": "wss://csms.example/ocpp", "auth_key": KEY, "ca": "ca.pem"}, 2),
    ({"url": "wss://csms.example/ocpp", "ca": "ca.pem", "cert": "cert.pem", "key": "key.pem"},
     3),
])
def test_websocket_profile_defaults_from_the_url_and_the_credentials(folder, section, profile):
    cfg = load(write(folder, ws(**section)))
    assert cfg["transport"] == "websocket" and cfg["mqtt"] is None
    assert cfg["websocket"]["security_profile"] == profile
    assert cfg["websocket"]["ping_interval"] == 60
    if "ca" in section:
        assert cfg["websocket"]["ca"] == str(folder / "ca.pem")


@pytest.mark.parametrize("section,words", [
    ({}, "missing required field websocket.url"),
    ({"url": "http://x/ocpp"}, "websocket.url: websocket url must start with ws:// or wss://"),
    ({"url": "ws://x/ocpp", "security_profile": 2}, "security_profile 2 needs a wss:// url"),
    ({"url": "wss://x/ocpp", "security_profile": 1, "auth_key": KEY},
     "security_profile 1 needs a ws:// url"),
    ({"url": "ws://x/ocpp", "security_profile": 1}, "websocket.auth_key: security profile 1"),
    ({"url": "wss://x/ocpp", "auth_key": KEY}, "websocket.ca: security profile 2 needs it"),
    ({"url": "wss://x/ocpp", "ca": "ca.pem", "security_profile": 3},
     "websocket.cert: security profile 3 needs it"),
    ({"url": "ws://x/ocpp", "auth_key": "short"}, "websocket.auth_key: expected 32..40 hex"),
    ({"url": "ws://x/ocpp", "security_profile": 4}, "expected 0..3, got 4"),
    ({"url": "ws://x/ocpp", "ping_interval": -1}, "websocket.ping_interval"),
    ({"url": "wss://x/ocpp", "auth_key": KEY, "ca": "nowhere.pem"}, "file "),
])
def test_websocket_mistakes_are_one_line(folder, section, words):
    assert words in error(folder, ws(**section))


def test_unknown_transport_is_refused(folder):
    assert "transport: expected" in error(folder, dict(minimal(), transport="http"))


@pytest.mark.parametrize("template", ["x" * 37, "bad name", "caf\u00e9", "a/b"])
def test_provision_template_is_an_aws_template_name(folder, template):
    cfg = minimal()
    cfg["mqtt"]["provision_template"] = template
    assert "mqtt.provision_template: expected 1..36 of A-Z a-z 0-9 _ -" in error(folder, cfg)


def test_provision_template_is_taken(folder):
    cfg = minimal()
    cfg["mqtt"]["provision_template"] = "Charger_fleet-2"
    assert load(write(folder, cfg))["mqtt"]["provision_template"] == "Charger_fleet-2"
