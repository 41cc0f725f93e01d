"""The ESP32 board: drivers built from config.json's `hardware` section, checked at boot.

`hardware` (every key optional; the defaults are an ESP32-DevKitC wired as in README)::

    {"driver": "esp32", "connectors": 1, "max_amps": 32, "watchdog_ms": 8000,
     "rfid": {"spi": 1, "sck": 18, "mosi": 23, "miso": 19, "cs": 5, "rst": 22} | null,
     "connector": [{
        "pilot_pwm": 25, "pilot_adc": 34, "relay": [26], "relay_feedback": null,
        "rcd": 35, "rcd_test": 33,
        "lock": null | {"lock": 14, "unlock": 12, "feedback": 13},
        "meter": {"type": "sdm630" | "sdm120", "uart": 2, "tx": 17, "rx": 16, "de": null,
                  "slave": 1, "baud": 9600}
               | {"type": "s0", "pin": 32, "pulses_per_kwh": 1000}
               | {"type": "ct", "adc": 36, "volts": 230}}]}

The meter kinds and their options are the table METERS. Left out, the meter is an SDM630
with its defaults and DE on GPIO 4.

A second connector needs its own pins (`connector` has one object per connector). ADC inputs
must be ADC1 pins (32-39): ADC2 cannot be read while Wi-Fi is on. A mistake raises
BoardError with one line naming the field.
"""
from micropython import const

from chargepoint.platform.clock import ticks_diff

_ADC1 = (32, 33, 34, 35, 36, 37, 38, 39)
_SAVE_MS = const(60000)  # S0/CT registers are written to flash at most this often

# Defaults as (key, default) pairs: constant tuples stay in flash, where dicts would take heap.
# Connector 0's (its meter: connector_options, METERS); a second one has its own pins.
_CONNECTOR = (("pilot_pwm", 25), ("pilot_adc", 34), ("relay", 26), ("relay_feedback", None),
              ("rcd", 35), ("rcd_test", 33), ("lock", None))
_RFID = (("spi", 1), ("sck", 18), ("mosi", 23), ("miso", 19), ("cs", 5), ("rst", 22))
# What a meter's option is: a value taken as given, a GPIO, an ADC1 input. A GPIO or ADC1
# input may be null only where its default is.
_VALUE = const(0)
_GPIO = const(1)
_ADC = const(2)
_SDM = (("uart", 2, _VALUE), ("tx", 17, _GPIO), ("rx", 16, _GPIO), ("de", None, _GPIO),
        ("slave", 1, _VALUE), ("baud", 9600, _VALUE))


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
    allowed = dict(_CONNECTOR)
    allowed["meter"] = {"type": "sdm630", "de": 4}  # the rest are the SDM's defaults (METERS)
    _keys(name, c, allowed)
    out = allowed if i == 0 else {"relay_feedback": None, "rcd": None, "rcd_test": None,
                                  "lock": None}
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
    kind = m.get("type") if isinstance(m, dict) else None
    if not isinstance(kind, str) or kind not in METERS:
        raise BoardError("hardware.%s: expected an object with type one of %s"
                         % (field, ", ".join(sorted(METERS))))
    out = {"type": kind}
    for key, default, _ in METERS[kind][0]:
        out[key] = m.get(key, default)
    _keys(field, m, out)
    for key, default, what in METERS[kind][0]:
        if what != _VALUE and (out[key] is not None or default is not None):
            _pin(field + "." + key, out[key], adc=what == _ADC)
    return out


def open_relays(path="config.json"):
    """boot.py's first act: every contactor output of the configured board driven to open
    (GPIO levels survive a soft reset). Never raises: a broken configuration is reported
    later, by the boot proper; the default pins are opened then."""
    from chargepoint.hardware.relay import open_all

    pins = [dict(_CONNECTOR)["relay"]]
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


def _sdm(m, buses, phases):
    bus = buses.get(m["uart"])
    if bus is None:
        import machine

        from chargepoint.hardware.modbus import Modbus
        uart = machine.UART(m["uart"], baudrate=m["baud"], tx=m["tx"], rx=m["rx"])
        de = machine.Pin(m["de"], machine.Pin.OUT, value=0) if m["de"] is not None else None
        bus = buses[m["uart"]] = Modbus(uart, de, baudrate=m["baud"])
    from chargepoint.hardware.sdm import SdmMeter
    return SdmMeter(bus, m["slave"], phases)


def _s0(m, i, buses):
    import machine

    from chargepoint.hardware.s0 import S0Meter
    pin = machine.Pin(m["pin"], machine.Pin.IN, machine.Pin.PULL_UP)
    return S0Meter(pin, m["pulses_per_kwh"], unit=i)


def _ct(m, i, buses):
    import machine

    from chargepoint.hardware.ct import CtMeter
    adc = machine.ADC(machine.Pin(m["adc"]), atten=machine.ADC.ATTN_11DB)
    return CtMeter(adc, volts=float(m["volts"]))


# Meter kind -> (its options as (key, default, what it is), build(options, connector index,
# buses) -> the meter), `buses` being uart id -> Modbus master (meters may share a bus).
# A new kind of meter is one entry here, for the checker and the builder alike (and its
# model in tools/simfs/board_sim.py). The options are constant tuples, kept in flash.
METERS = {
    "sdm630": (_SDM, lambda m, i, buses: _sdm(m, buses, 3)),
    "sdm120": (_SDM, lambda m, i, buses: _sdm(m, buses, 1)),
    "s0": ((("pin", 32, _GPIO), ("pulses_per_kwh", 1000, _VALUE)), _s0),
    "ct": ((("adc", 36, _ADC), ("volts", 230, _VALUE)), _ct),
}


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
        meter = METERS[c["meter"]["type"]][1](c["meter"], i, buses)
        if store is not None:
            saved = store.read("meter%d" % (i + 1))
            if saved is not None:
                meter.restore(saved)
        connectors.append(Connector(pilot, relay, meter, rcd, lock, max_amps))
    rfid = None
    r = options.get("rfid", {})
    if r is not None:
        if not isinstance(r, dict):
            raise BoardError("hardware.rfid: expected an object or null")
        given, r = r, dict(_RFID)
        _keys("rfid", given, r)
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
