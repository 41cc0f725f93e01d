"""One-command development rig (`make sim`): broker, Central System and a simulated charger on a laptop.

    python -m tools.devsim [--state DIR] [--port N] [--id CP001]
        [--transport mqtt|websocket] [--security-profile 0|1|2|3]

What runs where, all on loopback, nothing on a board or in AWS:
  * Mosquitto (tools.broker), a child process: the stand-in for AWS IoT Core, mutual TLS with a
    local PKI (tools.certs) in STATE/pki, listening on --port (default 8883 if free, else any).
    Not with --transport websocket.
  * The development Central System (tools.csms), inside this process on its asyncio loop: it
    answers the charger's OCPP 1.6J CALLs (idTag 04A1B2C3D4E5F6 is authorized) and sends the
    remote commands typed here. Every frame it sees or sends is printed. Over MQTT
    (tools.csms.CentralSystem, the default) a client of the broker; with --transport websocket
    (tools.csms_websocket.WebSocketCentralSystem) an OCPP-J server on --port (default 9000 if
    free, else any), the charger connecting with --security-profile (default 0: ws://, no
    authentication; 1: ws:// and HTTP Basic; 2: wss:// and Basic; 3: wss:// and a client
    certificate). The charger's AuthorizationKey (profiles 1, 2) is kept in
    STATE/csms-keys.json, the certificates in STATE/pki.
  * The simulated charger (tools.sim), a child process: the unmodified device firmware frozen
    into the device twin (tools.twin: 32-bit MicroPython v1.28.0, an ESP32's 110000 bytes of
    heap), with simulated hardware (EV, RFID reader, relay, meter). Its flash is STATE/<id>; its control socket is how
    the commands typed here plug the EV, tap a card, etc. Its firmware log: STATE/<id>/firmware.log.

Type `help` for the commands. Ctrl-C, SIGTERM or `quit` stops everything.
"""
import argparse
import asyncio
import ctypes
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time

from tools import broker as broker_mod
from tools import certs, csms_commands, simclient
from tools.csms import CentralSystem
from tools.csms_commands import DEFAULT_TAG, Command, Front, Usage, execute
from tools.csms_websocket import WebSocketCentralSystem, server_tls_context
from tools.simclient import Simulator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_PORT = 8883
DEFAULT_WEBSOCKET_PORT = 9000
KEYS_FILE = "csms-keys.json"  # the chargers' AuthorizationKeys (profiles 1, 2), kept across runs
DEFAULT_LOAD = 16.0
FRAME_WIDTH = 200  # longer frames are shortened on screen
ONLINE_TIMEOUT = 30  # seconds for the charger to be connected and accepted
SIM_START_TIMEOUT = 120.0  # a first run builds the twin (about a minute)
POLL_INTERVAL = 0.5
ENERGY_REPRINT = 10.0  # while energy flows, repeat the status line at most this often
CONTROL_TIMEOUT = 40.0


def say(text):
    print(text, flush=True)


def port_free(port, host=broker_mod.HOST):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def _sim_preexec():
    # Own session: a Ctrl-C on the terminal reaches only us, and we stop the charger in order.
    # If we die anyway (kill -9), the charger gets SIGTERM and its firmware goes with it.
    os.setsid()
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _spawn_sim(args, **popen):
    return subprocess.Popen(args, preexec_fn=_sim_preexec, **popen)


def print_frame(charger_id, frame):
    text = frame.text
    if len(text) > FRAME_WIDTH:
        text = text[:FRAME_WIDTH - 3] + "..."
    route = "%s -> CSMS " % charger_id if frame.direction == "in" else "CSMS -> %s" % charger_id
    say("  %s  %s  %s" % (frame.time[11:23], route, text))


def firmware_line(cp_id, answer):
    """What to say of a firmware that is not running, or None while it runs."""
    state = answer.get("firmware")
    if state == "crashed":
        restarts = answer.get("restarts") or 0
        return "! charger %s: firmware crashed%s; it last printed: %s" % (
            cp_id, " (restarted %d times)" % restarts if restarts else "",
            answer.get("last_line") or "(nothing)")
    if state == "starting":
        return "* charger %s: firmware starting" % cp_id
    return None


def firmware_key(answer):
    """What changes firmware_line's text."""
    state = answer.get("firmware", "running")
    return state, answer.get("last_line") if state == "crashed" else None


def status_line(cp_id, answer, connector="1"):
    c = answer["connectors"][connector]
    parts = [c.get("status") or "?"]
    if c.get("error") and c["error"] != "NoError":
        parts[0] += " (%s)" % c["error"]
    parts.append("relay CLOSED" if c.get("relay") else "relay open")
    amps = c.get("pilot_amps")
    parts.append("pilot %g A" % amps if amps else "pilot off")
    parts.append("%d Wh" % (c.get("energy_wh") or 0))
    tx = c.get("transaction_id")
    parts.append("tx %s" % tx if tx is not None else "no tx")
    parts.append("online" if answer.get("online") else "OFFLINE")
    if answer.get("firmware") not in (None, "running"):
        parts.append("firmware %s" % answer["firmware"])
    return "[%s #%s] %s" % (cp_id, connector, " | ".join(parts))


# The simulator's commands, beside the Central System's in one table.

def _ev(state):
    async def run(front, cp, args):
        return await front.ask_sim(cmd="ev", connector=1, state=state)
    return run


async def _tap(front, cp, args):
    return await front.ask_sim(cmd="rfid", uid=args[0] if args else DEFAULT_TAG)


async def _load(front, cp, args):
    try:
        amps = float(args[0])
    except ValueError:
        raise Usage() from None
    return await front.ask_sim(cmd="load", connector=1, amps=amps)


def _fault(kind):
    async def run(front, cp, args):
        return await front.ask_sim(cmd="fault", connector=1, kind=kind)
    return run


async def _status(front, cp, args):
    return await front.status_text()


TABLE = csms_commands.TABLE.extended([
    Command("plug", "", "EV plugged in (state B)", _ev("B"), 0, 0, aliases=("p",)),
    Command("charge", "", "EV asks for charge (state C)", _ev("C"), 0, 0, aliases=("c",)),
    Command("pause", "", "EV stops asking (state B)", _ev("B"), 0, 0),
    Command("unplug", "", "EV unplugged (state A)", _ev("A"), 0, 0, aliases=("u",)),
    Command("tap", "[UID]", "present an RFID card (default %s)" % DEFAULT_TAG, _tap, 0, 1,
            aliases=("t",)),
    Command("load", "AMPS", "current the EV draws (default %g A)" % DEFAULT_LOAD, _load, 1, 1),
    Command("fault", "", "residual-current trip", _fault("rcd"), 0, 0),
    Command("clear", "", "clear the fault", _fault("clear"), 0, 0),
    Command("status", "", "show the connector state now", _status, 0, 0, aliases=("s",)),
])


class DevSim(Front):
    """`make sim`: the broker, the Central System and one simulated charger, and the front end
    of the Central System's commands (tools.csms_commands) for that charger."""

    table = TABLE
    connector = 1  # its charger has one
    pretty = True

    def __init__(self, args):
        self.args = args
        self.cp = self.charger = args.id
        self.state = os.path.abspath(args.state)
        self.stopping = None
        self.broker = None
        self.cs = None
        self.sim = None
        self.control = None  # the simulator's control connection (tools.simclient.Control)
        self.last_answer = None
        self.tasks = set()

    # -- bring-up -----------------------------------------------------------------------------

    def _port(self, default=DEFAULT_PORT):
        if self.args.port is None:
            return default if port_free(default) else broker_mod.free_port()
        return self.args.port or broker_mod.free_port()

    async def start(self):
        if self.args.transport == "websocket":
            link = await self._start_websocket()
        else:
            link = await self._start_mqtt()
        sim_state = os.path.join(self.state, self.cp)
        self.sim = Simulator(self.cp, state=sim_state, console=True, timeout=CONTROL_TIMEOUT,
                             start_timeout=SIM_START_TIMEOUT, failure=RuntimeError,
                             spawn=_spawn_sim, **link)
        self.sim.launch()
        say("* charger %s starting: MicroPython unix port, flash %s" % (self.cp, sim_state))
        self.control = (await self.sim.start()).ctl
        answer = await self.control.request(cmd="load", connector=1, amps=DEFAULT_LOAD)
        if not answer.get("ok"):
            say("! load: %s" % answer.get("error"))
        say("* charger %s up, EV load %g A; logs: %s/firmware.log" % (self.cp, DEFAULT_LOAD, sim_state))
        say("* its console (the firmware's REPL): %s: `make repl` in another terminal"
            % answer.get("console"))
        await self._until_online()

    async def _start_mqtt(self):
        """The broker and the Central System as its client; the simulator's flags for them."""
        pki_dir = os.path.join(self.state, "pki")
        pki = certs.ensure_pki(pki_dir, chargers=[self.cp])
        self.broker = broker_mod.Broker(os.path.join(self.state, "broker"), port=self._port(),
                                        pki_dir=pki_dir)
        # Mosquitto shares our process group: keep a terminal Ctrl-C from killing it before
        # the charger and the Central System are down (the blocked mask is inherited; we stop
        # it with SIGTERM).
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            self.broker.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        say("* broker (AWS IoT stand-in): mqtts://%s:%d, log %s"
            % (self.broker.host, self.broker.port, self.broker.log_path))

        csms_cert, csms_key = pki.client(certs.CSMS_CN)
        self.cs = CentralSystem(self.broker.host, self.broker.port, pki.ca, csms_cert, csms_key,
                                authorized=(DEFAULT_TAG,))
        self.cs.frame_listeners.append(print_frame)
        await self.cs.start()
        say("* Central System connected (authorized idTag %s)" % DEFAULT_TAG)
        cert, key = pki.client(self.cp)
        return dict(broker=(self.broker.host, self.broker.port), ca=pki.ca, cert=cert, key=key)

    def _authorization_key(self):
        """The charger's AuthorizationKey (40 hex digits), made once and kept in STATE: the
        firmware keeps the one it was given."""
        path = os.path.join(self.state, KEYS_FILE)
        try:
            with open(path) as f:
                keys = json.load(f)
        except (OSError, ValueError):
            keys = {}
        if not isinstance(keys.get(self.cp), str):
            keys[self.cp] = secrets.token_hex(20)
            os.makedirs(self.state, exist_ok=True)
            with open(path + ".tmp", "w") as f:
                json.dump(keys, f, indent=2)
            os.replace(path + ".tmp", path)
        return keys[self.cp]

    async def _start_websocket(self):
        """The Central System as an OCPP-J server for the charger's security profile; the
        simulator's flags for it."""
        profile = self.args.security_profile
        link = dict(transport="websocket", security_profile=profile)
        tls = keys = None
        if profile in (1, 2):
            link["auth_key"] = self._authorization_key()
            keys = {self.cp: link["auth_key"]}
        if profile >= 2:
            pki = certs.ensure_pki(os.path.join(self.state, "pki"), chargers=[self.cp])
            server_cert, server_key = pki.server()
            tls = server_tls_context(server_cert, server_key,
                                     client_ca=pki.ca if profile == 3 else None)
            link["ca"] = pki.ca
            if profile == 3:
                link["cert"], link["key"] = pki.client(self.cp)
        self.cs = WebSocketCentralSystem(
            broker_mod.HOST, self._port(DEFAULT_WEBSOCKET_PORT), keys=keys, ssl=tls,
            authorized=(DEFAULT_TAG,), chargers=[self.cp])
        self.cs.frame_listeners.append(print_frame)
        await self.cs.start()
        link["url"] = self.cs.url
        say("* Central System (OCPP-J over WebSocket): %s/%s, security profile %d "
            "(authorized idTag %s)" % (self.cs.url, self.cp, profile, DEFAULT_TAG))
        return link

    async def _until_online(self):
        """Ready means the charger is connected and its BootNotification was accepted."""
        deadline = time.monotonic() + ONLINE_TIMEOUT
        answer = {}
        while time.monotonic() < deadline:
            answer = await self.control.request(cmd="status")
            if answer.get("online"):
                say("* charger %s online: BootNotification accepted" % self.cp)
                return
            self.last_answer = answer
            if answer.get("firmware") == "crashed":  # it will not come online by waiting
                say(firmware_line(self.cp, answer))
                say("! charger %s not online: its commands are refused until it runs; see %s"
                    % (self.cp, os.path.join(self.state, self.cp, "firmware.log")))
                return
            if self.stopping.is_set():
                raise asyncio.CancelledError
            await asyncio.sleep(0.2)
        link = answer.get("mqtt") or {}  # the transport's counters, whichever it is
        say("! charger %s not online after %d s (%s %s%s); commands still work, see %s"
            % (self.cp, ONLINE_TIMEOUT,
               "WebSocket" if self.args.transport == "websocket" else "MQTT",
               link.get("state", "?"),
               ": " + link["last_error"] if link.get("last_error") else "",
               os.path.join(self.state, self.cp, "firmware.log")))

    def _sim_log_tail(self, limit=2000):
        return self.sim.read(simclient.LOG, limit).rstrip() or "(no log)"

    # -- live view ----------------------------------------------------------------------------

    async def poll(self):
        shown = None
        shown_wh = None
        shown_at = 0.0
        shown_firmware = firmware_key(self.last_answer or {})  # said already by start()
        while not self.stopping.is_set():
            try:
                answer = await self.control.request(cmd="status")
            except (ConnectionError, asyncio.TimeoutError, ValueError) as e:
                say("! status: %s" % (e or type(e).__name__))
                if self.sim.returncode is not None:
                    say("! the simulator exited with %s:\n%s"
                        % (self.sim.returncode, self._sim_log_tail()))
                    self.stopping.set()
                    return
                await asyncio.sleep(1.0)
                continue
            if answer.get("ok"):
                self.last_answer = answer
                firmware = firmware_key(answer)
                if firmware != shown_firmware:
                    line = firmware_line(self.cp, answer)
                    if line:
                        say(line)
                    shown_firmware = firmware
                c = answer["connectors"]["1"]
                key = (c.get("status"), c.get("error"), bool(c.get("relay")), c.get("pilot_amps"),
                       c.get("transaction_id"), bool(answer.get("online")))
                wh = c.get("energy_wh")
                now = time.monotonic()
                if key != shown or (wh != shown_wh and now - shown_at >= ENERGY_REPRINT):
                    say(status_line(self.cp, answer))
                    shown, shown_wh, shown_at = key, wh, now
            await asyncio.sleep(POLL_INTERVAL)

    # -- commands -----------------------------------------------------------------------------

    async def ask_sim(self, **req):
        """Ask the simulator; what to print (None: done)."""
        answer = await self.control.request(**req)
        if not answer.get("ok"):
            return "charger: %s" % answer.get("error")
        self.last_answer = answer
        return None

    async def status_text(self):
        answer = await self.control.request(cmd="status")
        if not answer.get("ok"):
            return "charger: %s" % answer.get("error")
        self.last_answer = answer
        line = firmware_line(self.cp, answer)
        return status_line(self.cp, answer) + ("\n" + line if line else "")

    def transaction_id(self, cp_id):
        """The running transaction as the charger last reported it, else as the Central
        System saw it start."""
        answer = self.last_answer
        if answer:
            tx = answer["connectors"]["1"].get("transaction_id")
            if tx is not None:
                return tx
        return super().transaction_id(cp_id)

    def quit(self):
        self.stopping.set()
        return "stopping"

    async def run_command(self, line):
        text = await execute(self, line)
        if text is not None:
            say(text)

    async def read_commands(self, lines):
        while True:
            line = await lines.get()
            if line is None:  # EOF: keep running until a signal
                return
            if not line.strip():
                continue
            if TABLE.find(line.split()[0]) is TABLE.find("quit"):
                # let the commands typed before `quit` answer first (briefly)
                pending = [t for t in self.tasks if t is not asyncio.current_task()
                           and t.get_coro().__qualname__ == "DevSim.run_command"]
                if pending:
                    await asyncio.wait(pending, timeout=5)
            task = asyncio.ensure_future(self.run_command(line))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    # -- run and stop ---------------------------------------------------------------------

    async def main(self):
        loop = asyncio.get_running_loop()
        self.stopping = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self.stopping.set)
        lines = asyncio.Queue()

        def read_stdin():
            try:
                for line in sys.stdin:
                    loop.call_soon_threadsafe(lines.put_nowait, line)
            except (OSError, ValueError):
                pass
            try:
                loop.call_soon_threadsafe(lines.put_nowait, None)
            except RuntimeError:  # loop closed
                pass

        try:
            starting = asyncio.ensure_future(self.start())
            stop_wait = asyncio.ensure_future(self.stopping.wait())
            await asyncio.wait([starting, stop_wait], return_when=asyncio.FIRST_COMPLETED)
            if not starting.done():
                starting.cancel()
                await asyncio.gather(starting, return_exceptions=True)
                return 0
            starting.result()  # raises a start-up failure
            say(HELP)
            say("* ready: type a command (e.g. tap, then charge)")
            threading.Thread(target=read_stdin, name="devsim-stdin", daemon=True).start()
            for coro in (self.poll(), self.read_commands(lines)):
                task = asyncio.ensure_future(coro)
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
            await self.stopping.wait()
            return 0
        finally:
            await self.shutdown()

    async def shutdown(self):
        say("* stopping")
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            # Not gather: Python 3.11's asyncio.wait_for (the control connection's) swallows a
            # cancellation that comes as its inner await completes, and the task goes on; a
            # Ctrl-C under load hung here. The tasks also end at `stopping`.
            await asyncio.wait(tasks, timeout=2)
        if self.control:
            self.control.close()
        if self.sim:
            await self.sim.terminate()
        if self.cs:
            await self.cs.stop()
        if self.broker:
            await asyncio.get_running_loop().run_in_executor(None, self.broker.stop)
        say("* stopped")


HELP = TABLE.help(False)


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m tools.devsim", description=__doc__.split("\n")[0],
                                epilog=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--state", default=os.path.join(ROOT, "state"),
                   help="folder for the PKI, broker and charger flash (default %(default)s)")
    p.add_argument("--port", type=int, default=None,
                   help="the broker's port, or the Central System's with --transport "
                        "websocket; 0 = any free one (default 8883, 9000 with websocket, if "
                        "free, else any)")
    p.add_argument("--id", default="CP001", help="charge point id (default %(default)s)")
    p.add_argument("--transport", choices=("mqtt", "websocket"), default="mqtt",
                   help="the charger to the broker (AWS IoT stand-in) or straight to the "
                        "Central System over OCPP-J (default %(default)s)")
    p.add_argument("--security-profile", type=int, choices=(0, 1, 2, 3), default=None,
                   help="with --transport websocket: 0 ws://, 1 ws:// + Basic auth, 2 wss:// + "
                        "Basic auth, 3 wss:// + client certificate (default 0)")
    a = p.parse_args(argv)
    if a.port is not None and not 0 <= a.port < 65536:
        p.error("--port must be 0..65535")
    if a.security_profile is not None and a.transport != "websocket":
        p.error("--security-profile is for --transport websocket")
    if a.security_profile is None:
        a.security_profile = 0
    return a


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="! %(name)s: %(message)s")
    logging.getLogger("ocpp").setLevel(logging.CRITICAL)  # frames are printed by us
    try:
        return asyncio.run(DevSim(args).main())
    except KeyboardInterrupt:
        return 0
    except (RuntimeError, OSError) as e:
        print("tools.devsim: %s" % e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
