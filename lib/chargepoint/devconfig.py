"""Device configuration: one JSON file read at boot, checked, with defaults filled in.

Example `config.json` (only `id` and `mqtt.endpoint` are required)::

    {
      "id": "CP001",
      "mqtt": {
        "endpoint": "a1b2c3d4e5f6g7-ats.iot.eu-west-1.amazonaws.com",
        "port": 8883,
        "ca": "AmazonRootCA1.pem",
        "cert": "CP001.cert.pem",
        "key": "CP001.private.key",
        "keepalive": 300,
        "topic_in": "{id}/in",
        "topic_out": "{id}/out"
      },
      "wifi": {"ssid": "garage", "password": "secret"},
      "hardware": {"driver": "esp32", "connectors": 1},
      "repl": false
    }

Or, straight to a Central System over OCPP-J (chargepoint.transport.websocket)::

    {
      "id": "CP001",
      "transport": "websocket",
      "websocket": {
        "url": "wss://csms.example.com/ocpp",
        "security_profile": 2,
        "auth_key": "00112233445566778899AABBCCDDEEFF",
        "ca": "csms-ca.pem",
        "cert": "", "key": "",
        "ping_interval": 60
      }
    }

- `id`: charge point id = MQTT client id = AWS thing name: 1..128 bytes, no `/`, `+`, `#`.
- `transport`: "mqtt" (default: the `mqtt` section) or "websocket" (the `websocket` section;
  `mqtt` is then not needed).
- `websocket.url`: ws:// or wss://; the charger connects to it + "/" + the id, percent-encoded.
  `security_profile` (0..3, the first boot's SecurityProfile; by default 0 for ws://, 3 for
  wss:// with `cert` and `key`, else 2): 0 and 1 need ws://, 2 and 3 wss://; 1 and 2 need
  `auth_key` (the first AuthorizationKey: 32..40 hex digits, or 16..20 characters sent as
  they are); 2 and 3 need `ca` (the Central System's roots); 3 needs `cert` and `key`.
  `ping_interval`: WebSocketPingInterval at first boot, seconds, 0 = no pings.
- `mqtt.ca`/`cert`/`key`: PEM (with a `-----BEGIN ...-----` line) or DER files; relative
  names are taken relative to the folder of the configuration file. They must exist.
- `mqtt.keepalive`: seconds, 30..1200 (AWS IoT's range). Topics: `{id}` is replaced by the
  id; at most 256 bytes and 7 slashes, no wildcards.
- `mqtt.provision_template`: the AWS IoT fleet provisioning template (1..36 of A-Z a-z 0-9
  _ -) for provisioning by claim: `cert`/`key` are then the shared claim certificate, and a
  charger without its own certificate yet makes its key and has it certified through AWS's
  MQTT API (chargepoint.transport.claim). "" (default): `cert`/`key` are the charger's own.
- `wifi`: may be left out where there is no Wi-Fi (the host simulator): ssid "" then.
- `repl`: true starts aiorepl (an asyncio REPL on the serial console) beside the firmware
  (chargepoint.platform.console); off by default: while mpremote runs a command there the
  asyncio loop waits, and Ctrl-D at its prompt soft-resets the firmware.
- `hardware`: free-form options for the board driver; only `driver` (string, "esp32" unless
  given: chargepoint.hardware.esp32; the simulator's config.json says "sim") and `connectors`
  (integer 1..8) are checked here, the driver checks the rest.

`load()` returns a plain dict with every default filled in, or raises `ConfigError` whose
message is one line naming the file, the field and what was expected: the caller prints it,
there is never a stack trace for a configuration mistake.
"""
class ConfigError(Exception):
    """One line, whatever the file holds: control characters of a key or value it names are
    shown escaped (\\x0a), so the console and the log get one line per mistake."""

    def __init__(self, message):
        if any(ch < " " for ch in message):
            message = "".join(ch if ch >= " " else "\\x%02x" % ord(ch) for ch in message)
        super().__init__(message)


# section -> {key: (type name, default)}; a default of None means "required".
_MQTT = {
    "endpoint": ("str", None),
    "port": ("int", 8883),
    "ca": ("str", "ca.pem"),
    "cert": ("str", "cert.pem"),
    "key": ("str", "key.pem"),
    "keepalive": ("int", 300),
    "topic_in": ("str", "{id}/in"),
    "topic_out": ("str", "{id}/out"),
    "provision_template": ("str", ""),
}
_WEBSOCKET = {
    "url": ("str", None),
    "security_profile": ("int", -1),  # -1: from the url and the credentials
    "auth_key": ("str", ""),
    "ca": ("str", ""),
    "cert": ("str", ""),
    "key": ("str", ""),
    "ping_interval": ("int", 60),
}
_WIFI = {
    "ssid": ("str", ""),
    "password": ("str", ""),
}
_TOP = ("id", "transport", "mqtt", "websocket", "wifi", "hardware", "repl")
_TYPES = {"str": (str, "a string"), "int": (int, "an integer"), "dict": (dict, "an object")}


def _json_type(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _check_type(path, field, value, kind):
    cls, words = _TYPES[kind]
    # JSON true/false are ints to Python: refuse them where a number is meant.
    if not isinstance(value, cls) or isinstance(value, bool):
        raise ConfigError("%s: %s: expected %s, got %s" % (path, field, words, _json_type(value)))
    return value


def _section(path, name, raw, spec):
    if raw is None:
        raw = {}
    _check_type(path, name, raw, "dict")
    out = {}
    for key in raw:
        if key not in spec:
            raise ConfigError("%s: unknown key %s.%s (known: %s)"
                              % (path, name, key, ", ".join(sorted(spec))))
    for key in spec:
        kind, default = spec[key]
        if key in raw:
            out[key] = _check_type(path, name + "." + key, raw[key], kind)
        elif default is None:
            raise ConfigError("%s: missing required field %s.%s" % (path, name, key))
        else:
            out[key] = default
    return out


def _dirname(path):
    i = path.rfind("/")
    return path[:i] if i > 0 else ("/" if i == 0 else "")


def _resolve(base, name):
    if not base or name.startswith("/"):
        return name
    return base.rstrip("/") + "/" + name


def _check_credential(path, field, filename):
    try:
        with open(filename, "rb") as f:
            data = f.read()
    except OSError:
        raise ConfigError("%s: %s: file %s not found" % (path, field, filename))
    if data[:1] == b"\x30":
        return  # DER: an ASN.1 SEQUENCE
    if b"-----BEGIN " in data and b"-----END " in data:
        return
    raise ConfigError("%s: %s: %s is neither PEM (-----BEGIN ...-----) nor DER"
                      % (path, field, filename))


def check(cfg, path="config.json"):
    """Validate a decoded configuration dict; returns a new dict with defaults filled in."""
    if not isinstance(cfg, dict):
        raise ConfigError("%s: expected a JSON object at the top, got %s" % (path, _json_type(cfg)))
    for key in cfg:
        if key not in _TOP:
            raise ConfigError("%s: unknown key %s (known: %s)" % (path, key, ", ".join(_TOP)))
    if "id" not in cfg:
        raise ConfigError("%s: missing required field id" % path)
    cp_id = _check_type(path, "id", cfg["id"], "str")
    transport = cfg.get("transport", "mqtt")
    if transport not in ("mqtt", "websocket"):
        raise ConfigError("%s: transport: expected \"mqtt\" or \"websocket\", got %r"
                          % (path, transport))
    base = _dirname(path)
    mqtt = websocket = None
    if transport == "mqtt":
        mqtt = _mqtt(path, base, cfg, cp_id)
    else:
        websocket = _websocket(path, base, cfg, cp_id)
    wifi = _section(path, "wifi", cfg.get("wifi"), _WIFI)
    hardware = _check_type(path, "hardware", cfg.get("hardware", {}), "dict")
    hardware = dict(hardware)
    driver = hardware.get("driver", "esp32")
    hardware["driver"] = _check_type(path, "hardware.driver", driver, "str")
    connectors = _check_type(path, "hardware.connectors", hardware.get("connectors", 1), "int")
    if not 1 <= connectors <= 8:
        raise ConfigError("%s: hardware.connectors: expected 1..8, got %d" % (path, connectors))
    hardware["connectors"] = connectors
    repl = cfg.get("repl", False)
    if not isinstance(repl, bool):
        raise ConfigError("%s: repl: expected true or false, got %s" % (path, _json_type(repl)))
    return {"id": cp_id, "transport": transport, "mqtt": mqtt, "websocket": websocket,
            "wifi": wifi, "hardware": hardware, "repl": repl}


def _name_chars(text):
    for c in text:
        if not (c.isalpha() or c.isdigit() or c in "_-") or ord(c) > 127:
            return False
    return True


def _mqtt(path, base, cfg, cp_id):
    from chargepoint.transport.mqtt import check_client_id, make_topic

    try:
        check_client_id(cp_id)
    except ValueError as e:
        raise ConfigError("%s: id: %s" % (path, e))
    if "mqtt" not in cfg:
        raise ConfigError("%s: missing required field mqtt.endpoint" % path)
    mqtt = _section(path, "mqtt", cfg["mqtt"], _MQTT)
    if not mqtt["endpoint"]:
        raise ConfigError("%s: mqtt.endpoint: must not be empty" % path)
    if not 1 <= mqtt["port"] <= 65535:
        raise ConfigError("%s: mqtt.port: expected 1..65535, got %d" % (path, mqtt["port"]))
    if not 30 <= mqtt["keepalive"] <= 1200:
        raise ConfigError("%s: mqtt.keepalive: expected 30..1200 seconds, got %d"
                          % (path, mqtt["keepalive"]))
    for key in ("topic_in", "topic_out"):
        try:
            make_topic(mqtt[key], cp_id)
        except ValueError as e:
            raise ConfigError("%s: mqtt.%s: %s" % (path, key, e))
    template = mqtt["provision_template"]
    if template and not (len(template) <= 36 and _name_chars(template)):
        raise ConfigError("%s: mqtt.provision_template: expected 1..36 of A-Z a-z 0-9 _ -, "
                          "got %r" % (path, template))
    for key in ("ca", "cert", "key"):
        mqtt[key] = _resolve(base, mqtt[key])
        _check_credential(path, "mqtt." + key, mqtt[key])
    return mqtt


def _websocket(path, base, cfg, cp_id):
    from chargepoint.model.connection import valid_key
    from chargepoint.transport.websocket import parse_url

    if not cp_id or len(cp_id.encode()) > 128:
        raise ConfigError("%s: id: must be 1..128 bytes" % path)
    if "websocket" not in cfg:
        raise ConfigError("%s: missing required field websocket.url" % path)
    ws = _section(path, "websocket", cfg["websocket"], _WEBSOCKET)
    try:
        secure = parse_url(ws["url"], cp_id)[0]
    except ValueError as e:
        raise ConfigError("%s: websocket.url: %s" % (path, e))
    profile = ws["security_profile"]
    if profile == -1:
        profile = (3 if ws["cert"] and ws["key"] else 2) if secure else 0
    if not 0 <= profile <= 3:
        raise ConfigError("%s: websocket.security_profile: expected 0..3, got %d"
                          % (path, profile))
    if secure != (profile >= 2):
        raise ConfigError("%s: websocket.security_profile %d needs a %s url" % (
            path, profile, "wss://" if profile >= 2 else "ws://"))
    key = ws["auth_key"]
    if key and not valid_key(key):
        raise ConfigError("%s: websocket.auth_key: expected 32..40 hex digits or 16..20 "
                          "characters" % path)
    needs = {1: ("auth_key",), 2: ("auth_key", "ca"), 3: ("ca", "cert", "key")}
    for field in needs.get(profile, ()):
        if not ws[field]:
            raise ConfigError("%s: websocket.%s: security profile %d needs it"
                              % (path, field, profile))
    for field in ("ca", "cert", "key"):
        if ws[field]:
            ws[field] = _resolve(base, ws[field])
            _check_credential(path, "websocket." + field, ws[field])
    if ws["ping_interval"] < 0:
        raise ConfigError("%s: websocket.ping_interval: expected 0 or more seconds" % path)
    ws["security_profile"] = profile
    return ws


def load(path="config.json"):
    """Read, parse and check the configuration file; raises ConfigError (one line)."""
    import json

    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        raise ConfigError("%s: configuration file not found" % path)
    try:
        cfg = json.loads(data)
    except (ValueError, RuntimeError) as e:  # not JSON, not UTF-8; nested past the stack
        raise ConfigError("%s: not valid JSON (%s)" % (path, " ".join(str(e).split())))
    return check(cfg, path)
