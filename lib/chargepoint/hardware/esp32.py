"""The ESP32 board: drivers built from config.json's `hardware` section, checked at boot.

`hardware` (every key optional; the defaults are an ESP32-DevKitC wired as in README)::

    {"driver": "esp32", "connectors": 1, "max_amps": 32, "watchdog_ms": 8000,
     "rfid": {"spi": 1, "sck": 18, "mosi": 23, "miso": 19, "cs": 5, "rst": 22} | null,
     "connector": [{
        "pilot_pwm": 25, "pilot_adc": 34, "relay": [26], "relay_feedback": null,
        "rcd": 35, "rcd_test": 33,
        "lock": null | {"lock": 14, "unlock": 12, "feedback": 13},
        "meter": {"type": "sdm630" | "sdm120", "uart": 2, "tx": 17, "rx": 16, "de": 4,
                  "slave": 1, "baud": 9600}
               | {"type": "s0", "pin": 32, "pulses_per_kwh": 1000}
               | {"type": "ct", "adc": 36, "volts": 230}}]}

A second connector needs its own pins (`connector` has one object per connector). ADC inputs
must be ADC1 pins (32-39): ADC2 cannot be read while Wi-Fi is on. A mistake raises
BoardError with one line naming the field.
"""
from micropython import const

from chargepoint.platform.clock import ticks_diff

_ADC1 = (32, 33, 34, 35, 36, 37, 38, 39)
_SAVE_MS = const(60000)  # S0/CT registers are written to flash at most this often

CONNECTOR = {"pilot_pwm": 25, "pilot_adc": 34, "relay": [26], "relay_feedback": None,
             "rcd": 35, "rcd_test": 33, "lock": None,
             "meter": {"type": "sdm630", "uart": 2, "tx": 17, "rx": 16, "de": 4, "slave": 1,
                       "baud": 9600}}
RFID = {"spi": 1, "sck": 18, "mosi": 23, "miso": 19, "cs": 5, "rst": 22}
METERS = ("sdm630", "sdm120", "s0", "ct")


class BoardError(ValueError):
    pass


def _pin(field, value, adc=False):
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise BoardError("hardware.%s: expected a GPIO number, got %r" % (field, value))
    if adc and value < 100 and value not in _ADC1:
        raise BoardError("hardware.%s: GPIO %d is not an ADC1 pin (32-39)" % (field, value))
    return value


def _keys(field, given, allowed):
    for key in given:
        if key not in allowed:
            raise BoardError("hardware.%s: unknown key %s (known: %s)"
                             % (field, key, ", ".join(sorted(allowed))))


def connector_options(options, i):
    """Connector i's options (0-based) with the defaults filled in, checked."""
    given = options.get("connector") or [{}]
    if not isinstance(given, list) or len(given) < options.get("connectors", 1):
        raise BoardError("hardware.connector: expected a list with one object per connector")
    c = given[i]
    name = "connector[%d]" % i
    if not isinstance(c, dict):
        raise BoardError("hardware.%s: expected an object" % name)
    _keys(name, c, CONNECTOR)
    out = dict(CONNECTOR) if i == 0 else {"relay_feedback": None, "rcd": None,
                                           "rcd_test": None, "lock": None}
    out.update(c)
    for key in ("pilot_pwm", "pilot_adc", "relay", "meter"):
        if key not in out:
            raise BoardError("hardware.%s.%s: required for a second connector" % (name, key))
    _pin(name + ".pilot_pwm", out["pilot_pwm"])
    _pin(name + ".pilot_adc", out["pilot_adc"], adc=True)
    relay = out["relay"] if isinstance(out["relay"], list) else [out["relay"]]
    if not 1 <= len(relay) <= 2:
        raise BoardError("hardware.%s.relay: one or two GPIOs" % name)
    out["relay"] = [_pin(name + ".relay", p) for p in relay]
    for key in ("relay_feedback", "rcd", "rcd_test"):
        if out[key] is not None:
            _pin(name + "." + key, out[key])
    lock = out["lock"]
    if lock is not None:
        if not isinstance(lock, dict) or "lock" not in lock:
            raise BoardError("hardware.%s.lock: expected {\"lock\": GPIO, ...} or null" % name)
        _keys(name + ".lock", lock, ("lock", "unlock", "feedback"))
        for key, value in lock.items():
            if value is not None:
                _pin("%s.lock.%s" % (name, key), value)
    out["meter"] = _meter(name + ".meter", out["meter"])
    return out


def _meter(field, m):
    if not isinstance(m, dict) or m.get("type") not in METERS:
        raise BoardError("hardware.%s: expected an object with type one of %s"
                         % (field, ", ".join(METERS)))
    kind = m["type"]
    if kind in ("sdm630", "sdm120"):
        allowed = {"type": 0, "uart": 2, "tx": 17, "rx": 16, "de": None, "slave": 1,
                   "baud": 9600}
    elif kind == "s0":
        allowed = {"type": 0, "pin": 32, "pulses_per_kwh": 1000}
    else:
        allowed = {"type": 0, "adc": 36, "volts": 230}
    _keys(field, m, allowed)
    out = dict(allowed)
    out.update(m)
    for key in ("tx", "rx", "de", "pin"):
        if out.get(key) is not None:
            _pin(field + "." + key, out[key])
    if kind == "ct":
        _pin(field + ".adc", out["adc"], adc=True)
    return out


def open_relays(path="config.json"):
    """boot.py's first act: every contactor output of the configured board driven to open
    (GPIO levels survive a soft reset). Never raises: a broken configuration is reported
    later, by the boot proper; the default pins are opened then."""
    from chargepoint.hardware.relay import open_all

    pins = CONNECTOR["relay"]
    try:
        import json

        with open(path) as f:
            options = json.load(f).get("hardware", {})
        pins = []
        for i in range(options.get("connectors", 1)):
            pins += connector_options(options, i)["relay"]
    except Exception:  # noqa: B902 (no config yet, or a broken one: the default wiring)
        pass
    open_all(pins)
    return pins


class Connector:
    """One connector's hardware as the charger model drives it (chargepoint.model.board)."""

    def __init__(self, pilot, relay, meter, rcd, lock, max_amps):
        self.pilot = pilot
        self.relay = relay
        self.meter = meter
        self.rcd = rcd
        self.lock = lock
        self.max_amps = max_amps


class Board:
    def __init__(self, connectors, rfid, info, guard, store=None):
        self.connectors = connectors
        self.rfid = rfid
        self.info = info
        self.guard = guard
        self._store = store  # keeps the S0/CT registers (an SDM keeps its own)
        self._saved = [None] * len(connectors)

    def service(self, ticks_ms, saved_at):
        """Meters read a little, a latched RCD trip is cleared once the EV is unplugged and
        the monitor reads normal (a new session then needs a new authorisation), registers
        are saved. Returns when it last saved."""
        for hw in self.connectors:
            hw.meter.poll()
            if hw.rcd is not None and hw.rcd.tripped() and hw.pilot.now == "A":
                hw.rcd.reset()
        return self.save(ticks_ms, saved_at)

    def save(self, now, saved_at, force=False):
        if self._store is None or (not force and saved_at is not None
                                   and ticks_diff(now, saved_at) < _SAVE_MS):
            return saved_at
        for i, hw in enumerate(self.connectors):
            register = getattr(hw.meter, "register", None)
            if register is not None and register() != self._saved[i]:
                self._saved[i] = register()
                self._store.write("meter%d" % (i + 1), self._saved[i])
        return now

    async def run(self, cp):
        import asyncio
        import time

        saved_at = None
        while True:
            saved_at = self.service(time.ticks_ms(), saved_at)
            await asyncio.sleep_ms(50)


def _build_meter(m, i, buses):
    import machine

    from chargepoint.hardware import meters

    kind = m["type"]
    if kind in ("sdm630", "sdm120"):
        bus = buses.get(m["uart"])
        if bus is None:
            from chargepoint.hardware.modbus import Modbus
            uart = machine.UART(m["uart"], baudrate=m["baud"], tx=m["tx"], rx=m["rx"])
            de = machine.Pin(m["de"], machine.Pin.OUT, value=0) if m["de"] is not None else None
            bus = buses[m["uart"]] = Modbus(uart, de, baudrate=m["baud"])
        return meters.SdmMeter(bus, m["slave"], 3 if kind == "sdm630" else 1)
    if kind == "s0":
        pin = machine.Pin(m["pin"], machine.Pin.IN, machine.Pin.PULL_UP)
        return meters.S0Meter(pin, m["pulses_per_kwh"], unit=i)
    return meters.CtMeter(machine.ADC(machine.Pin(m["adc"]), atten=machine.ADC.ATTN_11DB),
                          volts=float(m["volts"]))


def build(options, cfg, store=None):
    """The board for `options` (config.json's hardware section). `store` (a FileStore) keeps
    the S0/CT registers across reboots."""
    import machine

    from chargepoint.hardware.guard import Guard
    from chargepoint.hardware.lock import Lock
    from chargepoint.hardware.pilot import Pilot
    from chargepoint.hardware.rcd import Rcd
    from chargepoint.hardware.relay import Relay

    _keys("", options, ("driver", "connectors", "max_amps", "watchdog_ms", "rfid",
                        "connector"))
    n = options.get("connectors", 1)
    max_amps = float(options.get("max_amps", 32))
    connectors = []
    buses = {}  # uart id -> Modbus master (meters may share a bus)
    for i in range(n):
        c = connector_options(options, i)
        relay = Relay(c["relay"], feedback=c["relay_feedback"])
        pilot = Pilot(c["pilot_pwm"], c["pilot_adc"])
        rcd = Rcd(c["rcd"], test_pin=c["rcd_test"]) if c["rcd"] is not None else None
        lock = None
        if c["lock"] is not None:
            lk = c["lock"]
            lock = Lock(lk["lock"], lk.get("unlock"), lk.get("feedback"))
        meter = _build_meter(c["meter"], i, buses)
        if store is not None:
            saved = store.read("meter%d" % (i + 1))
            if saved is not None:
                meter.restore(saved)
        connectors.append(Connector(pilot, relay, meter, rcd, lock, max_amps))
    rfid = None
    r = options.get("rfid", RFID)
    if r is not None:
        if not isinstance(r, dict):
            raise BoardError("hardware.rfid: expected an object or null")
        _keys("rfid", r, RFID)
        given, r = r, dict(RFID)
        r.update(given)
        for key in ("sck", "mosi", "miso", "cs"):
            _pin("rfid." + key, r[key])
        from chargepoint.hardware.mfrc522 import MFRC522
        spi = machine.SPI(r["spi"], baudrate=1000000, sck=machine.Pin(r["sck"]),
                          mosi=machine.Pin(r["mosi"]), miso=machine.Pin(r["miso"]))
        rst = machine.Pin(r["rst"]) if r["rst"] is not None else None
        rfid = MFRC522(spi, machine.Pin(r["cs"]), rst)
    guard = Guard(connectors)
    guard.start()  # the safety path runs from here on, whatever the asyncio loop does
    kind = connectors[0].meter.__class__.__name__
    info = {"chargePointVendor": "MicroOCPP-Py", "chargePointModel": "ESP32",
            "chargePointSerialNumber": cfg["id"], "meterType": kind}
    return Board(connectors, rfid, info, guard, store)
