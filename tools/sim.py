"""Simulated charger: the unmodified firmware and its ESP32 drivers on the device twin,
against simulated peripherals.

    python3 -m tools.sim --id CP001 --broker 127.0.0.1:8883 --ca CA.pem --cert CP001.pem \
        --key CP001.key [--provision-template NAME] --state DIR --control 127.0.0.1:PORT
        [--heap BYTES] [--connectors N]
        [--lock] [--meter sdm630|sdm120|s0|ct] [--code frozen|deployed] [--console]
    python3 -m tools.sim --id CP001 --transport websocket --url ws://127.0.0.1:9000/ocpp \
        [--security-profile 0|1|2|3] [--auth-key KEY] [--ca CA.pem] [--cert CERT.pem
        --key KEY.pem] --state DIR --control 127.0.0.1:PORT [the same options]

--transport mqtt (the default): to the broker (--broker), mutual TLS with --ca, --cert, --key.
With --provision-template NAME, --cert and --key are the shared claim certificate of AWS IoT
fleet provisioning: the charger makes its own key, has it certified through the broker's
$aws/certificates/create-from-csr and $aws/provisioning-templates/NAME/provision MQTT API
(AWS IoT Core's, or the stand-in's: tools.broker --provision-template NAME) and reconnects
as its own thing (chargepoint.transport.claim); it keeps that identity across power cuts and
resets, in DIR's flash.
--transport websocket: straight to an OCPP 1.6 Central System over OCPP-J; the firmware
connects to --url + "/" + the id percent-encoded, subprotocol ocpp1.6. --security-profile
(OCPP 1.6 Security Whitepaper): 0 ws:// without authentication, 1 ws:// with HTTP Basic
(--auth-key, the AuthorizationKey), 2 wss:// with Basic, 3 wss:// with a client certificate
(--cert, --key); by default 0 for ws://, 3 for wss:// with --cert, else 2. --ca: the
Central System's roots for wss://. Either way the firmware's transport counters are "mqtt" in
`status`, and "transport" says which it is.

The firmware runs on the device twin (tools/twin.py: MicroPython v1.28.0, 32-bit, as on the
ESP32) with `-X heapsize=--heap` (default 110000, an ESP32's free heap with Wi-Fi up), flat:
everything the firmware creates counts. --code frozen (default): our code frozen into the
twin, as in our firmware image; --code deployed: the stock twin (no code of ours) with lib/
compiled to .mpy files in the device's /lib, as `make deploy` puts them on a stock ESP32
(bytecode in the heap). The board is the ESP32 one (chargepoint.hardware.esp32, the real
drivers) on a simulated `machine` whose pins and buses are wired to device models: an EV on
the control pilot, a contactor, a residual-current monitor, a cable-lock motor (--lock), an
energy meter (--meter) and an MFRC522 reader (tools/simfs/board_sim.py). DIR is the device's
flash: `DIR/fs` its filesystem (config.json, the credentials, boot.py, main.py, /lib when
deployed, the firmware's own records in `data/`). This process owns the physical world and
the control socket; what lasts of the world across power cuts (the meter's register, the
lock bolts) is in `DIR/world.json`. The firmware runs in a child process and is restarted on
Reset. `kill -9` of this process is a power cut (the child dies with it).

--console: the firmware's console (its stdin and stdout: boot messages, the log, and the REPL
that config.json "repl" starts) on a pseudo-terminal that behaves as a board's USB serial
port: `mpremote connect /dev/pts/N ...`. Output lines end in CR LF, as a board sends them;
what nobody reads is dropped beyond the last 8 KB; it stays the same path across resets.
`status` carries its path as "console" (null without --console), and `DIR/console` holds
{"path", "pid"} while the simulator runs.

Control socket: JSON lines over TCP, one response line per request line; every command acts
on a model, never on a driver:
  {"cmd":"ev","connector":1,"state":"A"|"B"|"C"}     EV unplugged / plugged / asking for charge
  {"cmd":"rfid","uid":"04A1B2C3D4E5F6"}               a card (4, 7 or 10-byte UID in hex, either
                                                      case) held to the reader for a second
  {"cmd":"load","connector":1,"amps":16.0}            current the EV draws per phase
  {"cmd":"fault","connector":1,"kind":"rcd"|"clear"}  residual-current trip / cleared
  {"cmd":"lock","connector":1,"fail":true|false}      (--lock) the cable lock jams / works
  {"cmd":"meter","connector":1,"fault":"crc"|"silent"|"none"}  (Modbus meters) corrupt CRCs,
                                                      no answers, or working again
  {"cmd":"relay","connector":1,"welded":true|false}   the contact stays closed when opened
  {"cmd":"pilot","connector":1,"diode":false|true}    the EV's diode missing / present
  {"cmd":"block","connector":1,"ms":2000,"unplug_after_ms":300}  the firmware's asyncio loop
                                                      stuck for ms; the EV unplugged into it;
                                                      "blocked": {loop_ms, open_ms} in the answer
  {"cmd":"status"}                                    firmware and connector state

`status` is answered at once, whatever the firmware does: from the device models' side (the
world's thread in the firmware process reads the charge point's view and the models; the
asyncio loop need not run, it may be blocked) while the firmware runs, from what the simulator
knows otherwise. Every answer carries "firmware": "running" (it said hello on the bus),
"starting" (the first start, or after a reset, before hello) or "crashed" (the last run ended
with an exit code other than 75, the reboot, or with 75 right after a traceback: main.py
resets the board after an exception; and no hello since: the simulator restarts it after a
second, again and again); "last_line": the last non-empty line the firmware printed
(of the run that crashed when "crashed", of the run going on when "starting", null when
running), e.g. "MemoryError: memory allocation failed, allocating 338 bytes"; "restarts": how
many times the firmware was restarted after a crash (0 if never); "safe_mode": whether the
firmware runs in safe mode (main.py: after 5 boots in a row that failed). While it is not
running,
"online" is false, "uptime_ms", "heap_free" and "mqtt" are null, "heap_peak" is the last
run's, and the connectors are as the firmware last reported them (their fields null if it
never did). Every other command waits for a starting firmware (up to 15 s) and is answered
{"ok":false,"error":"firmware not running: <last line>"} at once while it is crashed (the
world is left as it was).

`status` besides: online, code (frozen|deployed), transport (mqtt|websocket, as given),
heap_free and heap_peak (bytes, after a collection), uptime_ms, boots (firmware starts), mqtt
(the transport's counters, whichever transport it is), identity ("config": config.json's
certificate, from --cert; "claim": that, the claim certificate, while provisioning; "own":
one made on the charger, by provisioning or by OCPP's SignCertificate; null over a
websocket) and certificate_serial (hex, of the certificate the MQTT link presents), queued (transaction messages waiting on
flash), heap_simulation (bytes of the live heap that are the simulation's own: its modules, the
device models and the bus, not the drivers; measured in the firmware process as they are
built), reader_failed, unlogged_frames, console; per connector: status, error, pilot_state, relay
(commanded), contact (the contactor's), pilot_amps (the model's offer), pilot_duty (the PWM
duty in % on the pilot pin, null without PWM), transaction_id, id_tag, energy_wh (the
firmware's register), meter_ok, locked (the lock's bolt; null without --lock: the cable is
tethered, the board has no lock), open_ms (from a change of the world that came while the
contact was closed to the contact opening, timed on the models' side; null if it has not
opened since).

The world reaches the models over a connection of its own, read by a thread in the firmware
process: a change acts at once, also while the firmware's asyncio loop is blocked; the
answer comes once the firmware's loop has run on it.

--code deployed needs about DEPLOYED_MIN_HEAP (190000) bytes of heap to start: below that the
simulator still runs it (it runs out of heap while importing and is restarted again and
again, "crashed" in status) but says so first, on stderr and stdout.
"""
import argparse
import asyncio
import ctypes
import json
import os
import pty
import shutil
import signal
import subprocess
import sys
import time
import tty
import urllib.parse

from tools import deploy, twin

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REBOOT_EXIT = 75
_PWRON_RESET, _HARD_RESET, _WDT_RESET, _SOFT_RESET = 1, 2, 3, 5  # machine.reset_cause()
BOOT = os.path.join(ROOT, "tools", "simboot.py")
ANSWER_TIMEOUT = 15.0  # a firmware (re)starting answers within this
STATUS_TIMEOUT = 2.0  # the world's thread answers a status within this, or it is not there
CRASH_PAUSE = 1.0  # seconds between a crash and the restart
# The smallest -X heapsize at which --code deployed boots and goes online (BootNotification
# accepted): measured with tools.sim against Mosquitto and tools.csms at commit cb75eef,
# MemoryError at 189800 and below (in a 4 KB TLS buffer, or sending the first state), online
# at 190000 with 15 KB left (the code alone is about 105 KB of .mpy, README "Heap"). A
# charging session needs more: `make bench`'s smallest passing heap is about 197 KB, and a
# firmware update's download at 256000 once found no 1.3 KB in one piece for the HTTP
# client's code (README "Heap"): the end-to-end tests and the bench run it at 320000.
DEPLOYED_MIN_HEAP = 190000
DEPLOYED_HEAP = 320000  # what to suggest: the end-to-end tests' figure
# simboot.py's own lines once main.py has returned: they never say why
_TWIN_REPL = (">>>", "MicroPython REPL (device twin)", "MPY: soft reboot")
_LINE_MAX = 1000  # a longer output line is cut to this many characters in last_line
# the keys of a connector in `status`, all null while the firmware never reported one
_CONNECTOR_KEYS = ("status", "error", "pilot_state", "relay", "contact", "pilot_amps",
                   "pilot_duty", "transaction_id", "id_tag", "energy_wh", "meter_ok", "locked",
                   "open_ms")


TRANSPORTS = ("mqtt", "websocket")
WEBSOCKET_CA = "csms-ca.pem"  # on the flash: the Central System's roots for wss://


class UsageError(Exception):
    pass


class NotRunning(Exception):
    """The firmware has crashed and not said hello since: nobody to act on a command."""


def _address(text, flag):
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError("%s must be HOST:PORT, got %r" % (flag, text))
    return host, int(port)


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python3 -m tools.sim", description=__doc__.split("\n")[0])
    p.add_argument("--id", required=True)
    p.add_argument("--transport", choices=TRANSPORTS, default="mqtt",
                   help="to an MQTT broker (AWS IoT Core) or straight to a Central System")
    p.add_argument("--broker", help="mqtt: HOST:PORT")
    p.add_argument("--url", help="websocket: the Central System's ws:// or wss:// URL, the id "
                                 "appended")
    p.add_argument("--security-profile", type=int, choices=(0, 1, 2, 3),
                   help="websocket: 0 for ws://, 3 for wss:// with --cert, else 2 by default")
    p.add_argument("--auth-key", help="websocket: AuthorizationKey for HTTP Basic (profiles 1, 2)")
    p.add_argument("--ca", help="mqtt: the broker's CA; websocket: the Central System's (wss://)")
    p.add_argument("--cert", help="mqtt: the client certificate; websocket: profile 3's")
    p.add_argument("--key", help="its private key")
    p.add_argument("--provision-template", metavar="NAME",
                   help="mqtt: --cert/--key are a claim certificate: provision by claim with "
                        "this fleet provisioning template")
    p.add_argument("--state", required=True)
    p.add_argument("--control", required=True)
    p.add_argument("--heap", type=int, default=110000)
    p.add_argument("--connectors", type=int, default=1)
    p.add_argument("--max-amps", type=float, default=32.0)
    p.add_argument("--lock", action="store_true", help="socket outlets with a cable lock")
    p.add_argument("--meter", choices=("sdm630", "sdm120", "s0", "ct"), default="sdm630",
                   help="the energy meter of each connector")
    p.add_argument("--code", choices=("frozen", "deployed"), default="frozen",
                   help="our code frozen into the twin, or .mpy files in /lib on the stock one")
    p.add_argument("--quiet", action="store_true", help="no live log on stdout")
    p.add_argument("--console", action="store_true",
                   help="the firmware's console (and REPL) on a pseudo-terminal")

    def error(message):
        raise UsageError(message)
    p.error = error
    a = p.parse_args(argv)
    if a.transport == "mqtt":
        _mqtt_args(a)
    else:
        _websocket_args(a)
    a.control_addr = _address(a.control, "--control")
    for flag in ("ca", "cert", "key"):
        path = getattr(a, flag)
        if path is not None and not os.path.isfile(path):
            raise UsageError("--%s: no such file: %s" % (flag, path))
    if not 1 <= a.connectors <= 8:
        raise UsageError("--connectors must be 1..8")
    if a.heap < 20000:
        raise UsageError("--heap must be at least 20000 bytes")
    return a


def _mqtt_args(a):
    for flag in ("url", "security_profile", "auth_key"):
        if getattr(a, flag) is not None:
            raise UsageError("--%s is for --transport websocket" % flag.replace("_", "-"))
    template = a.provision_template
    if template is not None and not (
            1 <= len(template) <= 36 and all(c.isascii() and (c.isalnum() or c in "_-")
                                             for c in template)):
        raise UsageError("--provision-template must be 1..36 of A-Z a-z 0-9 _ -")
    missing = [flag for flag in ("broker", "ca", "cert", "key") if getattr(a, flag) is None]
    if missing:
        raise UsageError("the following arguments are required: %s"
                         % ", ".join("--" + flag for flag in missing))
    a.broker_addr = _address(a.broker, "--broker")
    if not a.id or len(a.id) > 128 or any(ch in a.id for ch in "/+#"):
        raise UsageError("--id must be 1..128 characters without / + #")


def _websocket_args(a):
    """--url, --security-profile (its default), --auth-key, --ca, --cert and --key agree."""
    if a.broker is not None:
        raise UsageError("--broker is for --transport mqtt")
    if a.provision_template is not None:
        raise UsageError("--provision-template is for --transport mqtt")
    if a.url is None:
        raise UsageError("--transport websocket needs --url ws://HOST:PORT/PATH or wss://...")
    try:
        url = urllib.parse.urlsplit(a.url)
        url.port  # raises ValueError for a port that is not a number
    except ValueError:
        raise UsageError("--url: not a URL: %r" % a.url) from None
    if url.scheme not in ("ws", "wss") or not url.hostname or url.query or url.fragment:
        raise UsageError("--url must be ws://HOST[:PORT]/PATH or wss://..., got %r" % a.url)
    secure = url.scheme == "wss"
    if (a.cert is None) != (a.key is None):
        raise UsageError("give --cert and --key together")
    if a.security_profile is None:
        a.security_profile = (3 if a.cert else 2) if secure else 0
    profile = a.security_profile
    if secure != (profile >= 2):
        raise UsageError("--security-profile %d needs a %s URL"
                         % (profile, "wss://" if profile >= 2 else "ws://"))
    if a.auth_key is not None and profile not in (1, 2):
        raise UsageError("--auth-key is for security profiles 1 and 2")
    if a.cert is not None and profile != 3:
        raise UsageError("--cert and --key are for security profile 3")
    if profile == 3 and a.cert is None:
        raise UsageError("security profile 3 needs --cert and --key")
    if a.ca is not None and not secure:
        raise UsageError("--ca is for a wss:// URL")
    if not a.id or len(a.id) > 128 or not a.id.isprintable():
        raise UsageError("--id must be 1..128 printable characters")
    a.broker_addr = None


def prepare_flash(a, bus_port):
    """Lay out the device's filesystem: config.json, credentials, boot.py and main.py, the
    firmware's own records in `data/` (kept), and with --code deployed the firmware compiled
    into /lib as `make deploy` puts it there. Returns the filesystem's folder."""
    fs = os.path.join(a.state, "fs")
    os.makedirs(fs, exist_ok=True)
    if a.transport == "mqtt":
        link = {"mqtt": {"endpoint": a.broker_addr[0], "port": a.broker_addr[1], "ca": "ca.pem",
                         "cert": "cert.pem", "key": "key.pem", "keepalive": 60}}
        if a.provision_template:
            link["mqtt"]["provision_template"] = a.provision_template
        files = (("ca", "ca.pem"), ("cert", "cert.pem"), ("key", "key.pem"))
    else:
        websocket = {"url": a.url, "security_profile": a.security_profile}
        if a.auth_key is not None:
            websocket["auth_key"] = a.auth_key
        files = (("ca", WEBSOCKET_CA), ("cert", "cert.pem"), ("key", "key.pem"))
        for flag, name in files:
            if getattr(a, flag) is not None:
                websocket[flag] = name
        link = {"transport": "websocket", "websocket": websocket}
    for flag, name in files:
        if getattr(a, flag) is not None:
            shutil.copyfile(getattr(a, flag), os.path.join(fs, name))
    config = {"id": a.id}
    config.update(link)
    # the simulated radio and NTP (tools/simfs/network.py, ntptime.py): the firmware's Wi-Fi
    # watcher and time sync run as on a board
    config["wifi"] = {"ssid": "sim", "password": "simulated"}
    config["hardware"] = {"driver": "sim", "connectors": a.connectors,
                          "bus": "127.0.0.1:%d" % bus_port, "max_amps": a.max_amps}
    config["hardware"]["meter"] = a.meter
    config["hardware"]["world"] = os.path.abspath(os.path.join(a.state, "world.json"))
    if a.lock:
        config["hardware"]["lock"] = True
    config["repl"] = a.console
    with open(os.path.join(fs, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    shutil.copyfile(os.path.join(ROOT, "main.py"), os.path.join(fs, "main.py"))
    shutil.copyfile(os.path.join(ROOT, "boot.py"), os.path.join(fs, "boot.py"))
    lib = os.path.join(fs, "lib")
    if a.code == "deployed":  # as `make deploy` puts it on a stock board
        deploy.compile_lib(lib)
    else:  # the frozen placement has our code in the image
        shutil.rmtree(os.path.join(lib, "chargepoint"), ignore_errors=True)
    return fs


def bootloader(folder):
    """The ESP-IDF bootloader with app rollback on the simulated OTA partitions
    (tools/simfs/esp32.py): the label to boot now. A "new" image boots as "pending"; one still
    pending (booted, never confirmed) is "aborted" and the other boots."""
    path = os.path.join(folder, "otadata.json")
    data = _load(path)
    label = data.get("boot", "ota_0")
    states = data.setdefault("states", {})
    state = states.get(label, "valid")
    if state == "pending":
        states[label] = "aborted"
    elif state == "new":
        states[label] = "pending"
    if states.get(label) == "aborted":
        label = "ota_1" if label == "ota_0" else "ota_0"
    data["boot"] = label
    if data != _load(path):
        _save(path, data)
    return label


def _die_with_parent():
    # A power cut of the simulator (kill -9) takes the firmware with it.
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _save(path, value):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f)
    os.replace(tmp, path)


class World:
    """The physical side as the simulator sets it: per connector the EV (state, diode), its
    load, a residual current, a jammed lock, a welded contactor, a meter fault. What lasts
    across power cuts (the meter's register, the lock's bolt) is reported by the board and
    kept in `DIR/world.json`, which the board reads when the firmware starts."""

    def __init__(self, state_dir, n, lock=False):
        self.path = os.path.join(state_dir, "world.json")
        self.lock = lock
        kept = _load(self.path)
        self.connectors = {str(i): {"ev": "A", "load": 0.0, "rcd": False, "diode": True,
                                    "welded": False, "meter": "none", "jam": False}
                           for i in range(1, n + 1)}
        self.kept = {k: dict(kept.get(k, {})) for k in self.connectors}
        self.saved = json.dumps(self.kept)

    def save(self):
        text = json.dumps(self.kept)
        if text != self.saved:
            _save(self.path, self.kept)
            self.saved = text

    def wire(self):
        return {k: dict(c) for k, c in self.connectors.items()}

    def observe(self, state):
        for k, c in state.get("connectors", {}).items():
            kept = self.kept.get(k)
            if kept is None:
                continue
            if c.get("register_wh") is not None:  # a meter with a register of its own
                kept["wh"] = max(kept.get("wh", 0), c["register_wh"])
            if c.get("locked") is not None:
                kept["locked"] = c["locked"]  # the firmware drives the bolt


class Console:
    """A board's USB serial console on a pseudo-terminal: the firmware's output to it (LF sent
    as CR LF, as MicroPython's console does), what is typed there to the firmware's stdin.
    The terminal side stays open here, so the path lasts across firmware restarts and
    clients coming and going."""

    BACKLOG = 8192

    def __init__(self):
        self.master, self.slave = pty.openpty()
        tty.setraw(self.slave)  # bytes as they are: no echo, no line editing
        self.path = os.ttyname(self.slave)
        os.set_blocking(self.master, False)
        self.stdin = None  # the running firmware's
        self.pending = bytearray()
        self.loop = None

    def start(self):
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(self.master, self._typed)

    def close(self):
        if self.loop is not None:
            self.loop.remove_reader(self.master)
            self.loop.remove_writer(self.master)
        os.close(self.master)
        os.close(self.slave)

    def _typed(self):
        try:
            data = os.read(self.master, 4096)
        except OSError:
            return
        if self.stdin is not None and not self.stdin.is_closing():
            self.stdin.write(data)  # while the firmware restarts, keys are lost, as on a board

    def show(self, data):
        self.pending += data.replace(b"\n", b"\r\n")
        if len(self.pending) > self.BACKLOG:  # nobody reading: keep the latest only
            del self.pending[:len(self.pending) - self.BACKLOG]
        self._flush()

    def _flush(self):
        try:
            n = os.write(self.master, self.pending) if self.pending else 0
        except BlockingIOError:
            n = 0
        del self.pending[:n]
        if self.pending:
            self.loop.add_writer(self.master, self._flush)
        else:
            self.loop.remove_writer(self.master)


class Simulator:
    def __init__(self, a):
        self.a = a
        self.console = Console() if a.console else None
        self.world = World(a.state, a.connectors, a.lock)
        self.child = None
        self.writer = None  # bus to the running firmware
        self.physics = None  # (reader, writer): the world's own connection to it
        self.physics_up = asyncio.Event()
        self.physics_lock = asyncio.Lock()
        self.up = asyncio.Event()
        self.waiting = {}
        self.next_id = 0
        self.lock = asyncio.Lock()
        self.state = None
        self.boots = 0
        self.firmware_state = "starting"  # running | starting | crashed (see the docstring)
        self.changed = asyncio.Event()  # set (and replaced) when firmware_state changes
        self.output = None  # the last non-empty line the run going on printed
        self.partial = b""  # ... and what it printed after its last newline
        self.traced = False
        self.reset_line = None
        self.reset_cause = _PWRON_RESET  # the power comes on: the simulator's first start
        self.crash_line = None  # the last line of the run that crashed
        self.exit_code = None
        self.restarts = 0
        self.hard_reset = False  # the firmware asked for a hard reset: its kill is one

    def log(self, text):
        if not self.a.quiet:
            print(text, flush=True)

    # -- the firmware process -------------------------------------------------------------

    def _become(self, state):
        if state != self.firmware_state:
            self.firmware_state = state
            self.changed.set()
            self.changed = asyncio.Event()

    def _heard(self, data):
        """The firmware's output, for last_line: its last non-empty line."""
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()[-_LINE_MAX:]
        for line in lines:
            self._line(line)

    def _line(self, raw):
        line = raw.decode("utf-8", "replace").strip()
        if line.startswith("Traceback (most recent call last)"):
            self.traced = True
        elif line in ("machine: watchdog reset", "MPY: soft reboot"):
            self.reset_line = line
        if line and not line.startswith(_TWIN_REPL):
            self.output = line[:_LINE_MAX]

    async def firmware(self, fs, binary):
        # sys.path as on an ESP32: frozen modules first, then the filesystem's /lib
        env = dict(os.environ, MICROPYPATH=".frozen:lib")
        self.log("* firmware: %s code on %s, -X heapsize=%d"
                 % (self.a.code, os.path.relpath(binary, ROOT), self.a.heap))
        log = open(os.path.join(self.a.state, "firmware.log"), "ab")
        console = self.console
        flash = os.path.join(self.a.state, "flash")  # the OTA partitions (simfs/esp32.py)
        os.makedirs(flash, exist_ok=True)
        while True:
            self.boots += 1
            self.traced = False  # a traceback seen in this run's output
            self.reset_line = None  # the watchdog's or the REPL's last words in it
            label = bootloader(flash)
            image = os.path.join(flash, label)
            run = binary
            if os.path.exists(image):  # an update's twin binary
                os.chmod(image, 0o755)
                run = image
                self.log("* bootloader: %s" % label)
            env.update(CP_TWIN_FLASH=flash, CP_TWIN_RUNNING=label,
                       CP_TWIN_RESET_CAUSE=str(self.reset_cause))
            # one stream for stdout and stderr, as a board's console; read here for last_line
            stdin = subprocess.DEVNULL if console is None else subprocess.PIPE
            self.output, self.partial = None, b""
            self.child = await asyncio.create_subprocess_exec(
                run, "-X", "heapsize=%d" % self.a.heap, BOOT, cwd=fs, env=env,
                preexec_fn=_die_with_parent, stdin=stdin, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT)
            if console is not None:
                console.stdin = self.child.stdin
            while True:
                data = await self.child.stdout.read(4096)
                if not data:
                    break
                log.write(data)
                log.flush()
                self._heard(data)
                if console is not None:
                    console.show(data)
            if console is not None:
                console.stdin = None
            self._line(self.partial)
            code = await self.child.wait()
            self.up.clear()
            self.writer = None
            self.physics = None
            self.physics_up.clear()
            for fut in self.waiting.values():  # asked the firmware that has gone: ask again
                if not fut.done():
                    fut.set_exception(ConnectionError("the firmware has restarted"))
            self.waiting.clear()
            self.world.save()  # the next boot reads it
            # machine.reset_cause() of the next boot, as an ESP32 would say it: the watchdog,
            # a soft reboot at the REPL, else a reset (machine.reset(), a crash: a panic)
            self.reset_cause = (_WDT_RESET if self.reset_line == "machine: watchdog reset" else
                                _SOFT_RESET if self.reset_line == "MPY: soft reboot" else
                                _HARD_RESET)
            # a reset right after a traceback is main.py's after an exception: a crash
            if (code == REBOOT_EXIT and not self.traced) or self.hard_reset:
                self.hard_reset = False
                self._become("starting")
                self.log("* firmware reset: booting again")
            else:
                self.crash_line, self.exit_code = self.output, code
                self._become("crashed")
                self.log("* firmware exited with %s%s: restarting (see %s/firmware.log)"
                         % (code, ": " + self.output if self.output else "", self.a.state))
                await asyncio.sleep(CRASH_PAUSE)
                self.restarts += 1

    async def on_bus(self, reader, writer):
        first = True
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                msg = json.loads(line)
                t = msg.get("t")
                if first and t == "physics":  # the world's connection (board_sim.py)
                    self.physics = (reader, writer)
                    self.physics_up.set()
                    return
                if first:
                    self.writer = writer
                    first = False
                if "state" in msg:
                    self.state = msg["state"]
                    self.world.observe(self.state)
                    self.world.save()  # a power cut may come any moment: the meter keeps it
                if t == "hello":
                    self.up.set()
                    self._become("running")
                    await self._push_world()
                    await self._bus_send({"t": "world"})
                elif t == "reboot" and msg.get("hard") and self.child is not None:
                    self.hard_reset = True  # RAM goes: no finally block of the firmware runs
                    self.child.kill()
                elif t == "ack":
                    fut = self.waiting.pop(msg.get("id"), None)
                    if fut and not fut.done():
                        fut.set_result(msg["state"])
                elif t == "frame":
                    self.log(("<- " if msg["dir"] == "in" else "-> ") + msg["text"])
                elif t == "state":
                    self._show(msg["state"])
        except (ConnectionError, ValueError):
            pass
        finally:
            if self.writer is writer:
                self.writer = None
                self.up.clear()

    def _show(self, state):
        parts = []
        for k, c in sorted(state["connectors"].items()):
            parts.append("#%s %s relay=%s pilot=%s tx=%s %d Wh" % (
                k, c["status"], "closed" if c["relay"] else "open",
                "%gA" % c["pilot_amps"] if c["pilot_amps"] else "off", c["transaction_id"],
                c["energy_wh"]))
        self.log("== %s | %s" % ("online" if state["online"] else "offline", " | ".join(parts)))

    async def _bus_send(self, msg):
        w = self.writer
        if w is None:
            return False
        w.write(json.dumps(msg).encode() + b"\n")
        await w.drain()
        return True

    async def _push_world(self):
        """The world as it is now to the models, at once (a thread there applies it, whatever
        the firmware's loop is doing)."""
        await self.physics_up.wait()
        async with self.physics_lock:
            reader, writer = self.physics
            writer.write(json.dumps({"connectors": self.world.wire()}).encode() + b"\n")
            await writer.drain()
            if not await asyncio.wait_for(reader.readline(), ANSWER_TIMEOUT):
                raise ConnectionError("the firmware is gone")

    async def ask(self, msg):
        """Send to the firmware, wait until it has run its loop on it; its state comes back.
        A firmware that restarts meanwhile (a reset) is asked again once it is up."""
        return await asyncio.wait_for(self._ask(msg), ANSWER_TIMEOUT)

    async def _ask(self, msg):
        while True:
            if self.firmware_state == "crashed":
                raise NotRunning()
            if not self.up.is_set():  # starting: until it says hello, or crashes
                await self.changed.wait()
                continue
            try:
                if msg["t"] == "world":
                    await self._push_world()
                self.next_id += 1
                msg["id"] = self.next_id
                fut = asyncio.get_running_loop().create_future()
                self.waiting[msg["id"]] = fut
                if await self._bus_send(msg):
                    return await fut
            except ConnectionError:
                pass
            await asyncio.sleep(0.05)  # until the sim has seen the exit (self.up cleared)


    # -- the control socket ---------------------------------------------------------------

    async def on_control(self, reader, writer):
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                if not line.strip():
                    continue
                answer = await self.request(line)
                writer.write(json.dumps(answer).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            try:
                writer.close()
            except RuntimeError:  # the loop is already closing
                pass

    def _connector(self, req):
        cid = req.get("connector", 1)
        if not isinstance(cid, int) or isinstance(cid, bool) or str(cid) not in self.world.connectors:
            raise UsageError("no connector %r" % (cid,))
        return self.world.connectors[str(cid)]

    async def request(self, line):
        try:
            req = json.loads(line)
            if not isinstance(req, dict):
                raise UsageError("a request is a JSON object")
            cmd = req.get("cmd")
            if cmd == "status":  # never waits for the firmware, nor behind another command
                return self.answer(await self.status())
            if cmd == "rfid":
                uid = req.get("uid")
                if (not isinstance(uid, str) or len(uid) not in (8, 14, 20)
                        or any(ch not in "0123456789abcdefABCDEF" for ch in uid)):
                    raise UsageError("uid must be a 4, 7 or 10-byte UID in hex "
                                     "(8, 14 or 20 hex digits)")
                msg = {"t": "rfid", "uid": uid.upper()}
                change = None
            elif cmd == "block":
                ms, after = req.get("ms"), req.get("unplug_after_ms")
                self._connector(req)
                if (not isinstance(ms, int) or not isinstance(after, int)
                        or not 0 < after < ms <= 10000):
                    raise UsageError("block needs ms (up to 10000) and unplug_after_ms < ms")
                msg = {"t": "block", "ms": ms, "unplug_after_ms": after,
                       "connector": req.get("connector", 1)}
                change = None
            else:
                change = self._change(cmd, req)
                msg = {"t": "world"}
            if self.firmware_state == "crashed":
                raise NotRunning()
            async with self.lock:
                if self.firmware_state == "crashed":  # it crashed while we waited our turn
                    raise NotRunning()
                if change is not None:
                    connector, key, value = change
                    connector[key] = value
                state = await self.ask(msg)
                if cmd == "block":
                    self.world.connectors[str(req.get("connector", 1))]["ev"] = "A"
                self.world.observe(state)
                self.world.save()
            return self.answer(state)
        except (UsageError, ValueError) as e:
            return {"ok": False, "error": str(e)}
        except NotRunning:
            return {"ok": False, "error": "firmware not running: %s" % self._why()}
        except asyncio.TimeoutError:
            if self.firmware_state == "crashed":
                return {"ok": False, "error": "firmware not running: %s" % self._why()}
            return {"ok": False, "error": "firmware not answering" + (
                ": %s" % self.output if self.output and not self.up.is_set() else "")}

    def _why(self):
        if self.crash_line:
            return self.crash_line
        return "it exited with %s, printing nothing" % (self.exit_code,)

    def _change(self, cmd, req):
        """The change of the world one control command asks for, (connector, key, value), or
        UsageError."""
        def flag(key):
            if not isinstance(req.get(key), bool):
                raise UsageError("%s must be true or false" % key)
            return req[key]

        if cmd == "ev":
            c = self._connector(req)
            if req.get("state") not in ("A", "B", "C"):
                raise UsageError("state must be A, B or C")
            return c, "ev", req["state"]
        if cmd == "load":
            c = self._connector(req)
            amps = req.get("amps")
            if not isinstance(amps, (int, float)) or isinstance(amps, bool) or amps < 0:
                raise UsageError("amps must be a number >= 0")
            return c, "load", float(amps)
        if cmd == "fault":
            c = self._connector(req)
            if req.get("kind") not in ("rcd", "clear"):
                raise UsageError("kind must be rcd or clear")
            return c, "rcd", req["kind"] == "rcd"
        if cmd == "lock":
            c = self._connector(req)
            if not self.world.lock:
                raise UsageError("no cable lock: start the simulator with --lock")
            return c, "jam", flag("fail")
        if cmd == "meter":
            c = self._connector(req)
            if req.get("fault") not in ("crc", "silent", "none"):
                raise UsageError("fault must be crc, silent or none")
            if self.a.meter not in ("sdm630", "sdm120"):
                raise UsageError("meter faults need a Modbus meter (--meter sdm630|sdm120)")
            return c, "meter", req["fault"]
        if cmd == "relay":
            return self._connector(req), "welded", flag("welded")
        if cmd == "pilot":
            return self._connector(req), "diode", flag("diode")
        raise UsageError("unknown cmd %r" % (cmd,))

    async def status(self):
        """The state now: read by the world's thread in the firmware process (no need for the
        firmware's loop to run), or, with no firmware there, what is known of it."""
        if self.physics is not None:
            state = await self._read_state()
            if state is not None:
                self.state = state
                self.world.observe(state)
                self.world.save()
                return state
            if self.firmware_state == "running" and self.state is not None:
                return self.state  # no heap for an answer just now: its last report
        return self._known()

    async def _read_state(self):
        async with self.physics_lock:
            if self.physics is None:
                return None
            reader, writer = self.physics
            try:
                writer.write(b'{"t":"status"}\n')
                await writer.drain()
                line = await asyncio.wait_for(reader.readline(), STATUS_TIMEOUT)
                state = json.loads(line) if line else None
            except (ConnectionError, asyncio.TimeoutError, ValueError):
                state = None
            if isinstance(state, dict) and "error" in state:  # no heap for it just now
                return None
            if not isinstance(state, dict) or "connectors" not in state:
                # gone, or out of step (a late answer would be read as the next one's):
                # no world for this run any more; the next run connects again
                if self.physics is not None and self.physics[1] is writer:
                    self.physics = None
                    self.physics_up.clear()
                writer.close()
                return None
            return state

    def _known(self):
        """The state shown while the firmware is not running: as it last reported it, or
        nothing known of the connectors the world has."""
        last = self.state or {}
        connectors = {k: dict.fromkeys(_CONNECTOR_KEYS) for k in self.world.connectors}
        for k, c in (last.get("connectors") or {}).items():
            connectors.setdefault(k, {}).update(c)
        return {"online": False, "heap_free": None, "heap_peak": last.get("heap_peak"),
                "uptime_ms": None, "mqtt": None, "reader_failed": last.get("reader_failed"),
                "unlogged_frames": last.get("unlogged_frames", 0), "connectors": connectors}

    def answer(self, state):
        connectors = {}
        for k, c in state["connectors"].items():
            view = dict(c)
            view.pop("register_wh", None)
            connectors[k] = view
        running = self.firmware_state == "running"
        return {"ok": True, "online": state["online"], "code": self.a.code,
                "transport": self.a.transport,
                "heap_free": state["heap_free"], "heap_peak": state["heap_peak"],
                "uptime_ms": state["uptime_ms"], "boots": self.boots, "mqtt": state.get("mqtt"),
                "queued": state.get("queued"), "heap_simulation": state.get("heap_simulation"),
                "reader_failed": state.get("reader_failed"),
                "unlogged_frames": state.get("unlogged_frames", 0),
                "blocked": state.get("blocked"),
                "console": self.console.path if self.console else None,
                "firmware": self.firmware_state,
                "last_line": (None if running else self.crash_line
                              if self.firmware_state == "crashed" else self.output),
                "restarts": self.restarts, "safe_mode": state.get("safe_mode", False),
                "identity": (state.get("mqtt") or {}).get("identity"),
                "certificate_serial": (state.get("mqtt") or {}).get("certificate_serial"),
                "connectors": connectors}

    def warn_heap(self):
        """Said before anything else: a heap the placement cannot start in."""
        if self.a.code == "deployed" and self.a.heap < DEPLOYED_MIN_HEAP:
            text = ("* warning: --heap %d is below the %d bytes --code deployed needs to start "
                    "(its .mpy code is in the heap): the firmware will run out of heap while "
                    "starting and be restarted again and again; use --heap %d or more (a "
                    "board with PSRAM), or --code frozen"
                    % (self.a.heap, DEPLOYED_MIN_HEAP, DEPLOYED_HEAP))
            print("tools.sim: " + text[2:], file=sys.stderr, flush=True)
            self.log(text)

    async def main(self):
        self.warn_heap()
        bus = await asyncio.start_server(self.on_bus, "127.0.0.1", 0)
        bus_port = bus.sockets[0].getsockname()[1]
        fs = prepare_flash(self.a, bus_port)
        binary = twin.ensure(stock=self.a.code == "deployed")
        host, port = self.a.control_addr
        control = await asyncio.start_server(self.on_control, host, port, reuse_address=True)
        self.log("* simulator %s: control on %s:%d, flash in %s" % (self.a.id, host, port, fs))
        console_file = os.path.join(self.a.state, "console")
        if self.console is not None:
            self.console.start()
            _save(console_file, {"path": self.console.path, "pid": os.getpid()})
            self.log("* console: %s (mpremote connect %s repl)"
                     % (self.console.path, self.console.path))
        tasks = [asyncio.create_task(self.firmware(fs, binary))]
        try:
            await asyncio.gather(*tasks)
        finally:
            if self.console is not None:
                self.console.close()
                os.remove(console_file)
            control.close()
            bus.close()
            if self.child and self.child.returncode is None:
                self.child.kill()
                await self.child.wait()
            if self.state is not None:
                self.world.observe(self.state)
            self.world.save()


def main(argv=None):
    try:
        a = parse_args(sys.argv[1:] if argv is None else argv)
        os.makedirs(a.state, exist_ok=True)
    except UsageError as e:
        print("tools.sim: %s" % e, file=sys.stderr)
        return 2
    except OSError as e:
        print("tools.sim: %s" % e, file=sys.stderr)
        return 2
    sim = Simulator(a)
    loop = asyncio.new_event_loop()
    main_task = loop.create_task(sim.main())
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, main_task.cancel)
    try:
        loop.run_until_complete(main_task)
    except asyncio.CancelledError:
        pass
    except OSError as e:
        print("tools.sim: %s" % e, file=sys.stderr)
        return 1
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
