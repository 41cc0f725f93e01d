"""One-command development rig (`make sim`): broker, Central System and a simulated charger on a laptop.

    python -m tools.devsim [--state DIR] [--port N] [--id CP001]

What runs where, all on loopback, nothing on a board or in AWS:
  * Mosquitto (tools.broker), a child process: the stand-in for AWS IoT Core, mutual TLS with a
    local PKI (tools.certs) in STATE/pki, listening on --port (default 8883 if free, else any).
  * The development Central System (tools.csms.CentralSystem), inside this process on its
    asyncio loop: it answers the charger's OCPP 1.6J CALLs (idTag 04A1B2C3D4E5F6 is authorized) and
    sends the remote commands typed here. Every frame it sees or sends is printed.
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
import signal
import socket
import sys
import threading
import time

from tools import broker as broker_mod
from tools import certs
from tools.csms import CentralSystem

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_TAG = "04A1B2C3D4E5F6"
DEFAULT_PORT = 8883
DEFAULT_LOAD = 16.0
FRAME_WIDTH = 200  # longer frames are shortened on screen
ONLINE_TIMEOUT = 30  # seconds for the charger to be connected and accepted
SIM_START_TIMEOUT = 120.0  # a first run builds the twin (about a minute)
POLL_INTERVAL = 0.5
ENERGY_REPRINT = 10.0  # while energy flows, repeat the status line at most this often
CONTROL_TIMEOUT = 40.0

HELP = """commands (one per line):
  plug | p                 EV plugged in (state B)
  charge | c               EV asks for charge (state C)
  pause                    EV stops asking (state B)
  unplug | u               EV unplugged (state A)
  tap [UID] | t [UID]      present an RFID card (default %s)
  load AMPS                current the EV draws (default %g A)
  fault                    residual-current trip
  clear                    clear the fault
  status | s               show the connector state now
  remote-start [TAG]       RemoteStartTransaction from the Central System
  remote-stop              RemoteStopTransaction of the running transaction
  reset soft|hard          Reset
  config KEY VALUE         ChangeConfiguration
  get [KEY ...]            GetConfiguration
  trigger MESSAGE          TriggerMessage (BootNotification, StatusNotification, Heartbeat, MeterValues, ...)
  help | h                 this list
  quit | q                 stop everything""" % (DEFAULT_TAG, DEFAULT_LOAD)

ALIASES = {"p": "plug", "c": "charge", "u": "unplug", "t": "tap", "s": "status", "q": "quit",
           "h": "help", "?": "help", "exit": "quit", "get-config": "get", "set-config": "config"}


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


class Control:
    """The simulator's control socket: one JSON answer line per JSON request line."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer
        self.lock = asyncio.Lock()

    async def ask(self, **req):
        async with self.lock:
            self.writer.write(json.dumps(req).encode() + b"\n")
            await self.writer.drain()
            line = await asyncio.wait_for(self.reader.readline(), CONTROL_TIMEOUT)
        if not line:
            raise ConnectionError("simulator closed its control socket")
        return json.loads(line)

    def close(self):
        try:
            self.writer.close()
        except Exception:
            pass


class DevSim:
    def __init__(self, args):
        self.args = args
        self.cp = args.id
        self.state = os.path.abspath(args.state)
        self.stopping = None
        self.broker = None
        self.cs = None
        self.sim = None
        self.control = None
        self.last_answer = None
        self.sim_log = None
        self.tasks = set()

    # -- bring-up -----------------------------------------------------------------------------

    def _port(self):
        if self.args.port is None:
            return DEFAULT_PORT if port_free(DEFAULT_PORT) else broker_mod.free_port()
        return self.args.port or broker_mod.free_port()

    async def start(self):
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
        control = ("127.0.0.1", broker_mod.free_port())
        sim_state = os.path.join(self.state, self.cp)
        os.makedirs(sim_state, exist_ok=True)
        self.sim_log = os.path.join(sim_state, "sim.log")
        with open(self.sim_log, "ab") as err:
            self.sim = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tools.sim", "--id", self.cp,
                "--broker", "%s:%d" % (self.broker.host, self.broker.port),
                "--ca", pki.ca, "--cert", cert, "--key", key, "--state", sim_state,
                "--control", "%s:%d" % control, "--quiet", "--console",
                cwd=ROOT, stdin=asyncio.subprocess.DEVNULL, stdout=err, stderr=err,
                preexec_fn=_sim_preexec)
        say("* charger %s starting: MicroPython unix port, flash %s" % (self.cp, sim_state))
        deadline = time.monotonic() + SIM_START_TIMEOUT
        while True:
            try:
                reader, writer = await asyncio.open_connection(*control)
                break
            except OSError:
                if self.sim.returncode is not None:
                    raise RuntimeError("the simulator exited with %s:\n%s"
                                       % (self.sim.returncode, self._sim_log_tail()))
                if time.monotonic() > deadline:
                    raise RuntimeError("the simulator's control socket did not open")
                if self.stopping.is_set():
                    raise asyncio.CancelledError
                await asyncio.sleep(0.1)
        self.control = Control(reader, writer)
        answer = await self.control.ask(cmd="load", connector=1, amps=DEFAULT_LOAD)
        if not answer.get("ok"):
            say("! load: %s" % answer.get("error"))
        say("* charger %s up, EV load %g A; logs: %s/firmware.log" % (self.cp, DEFAULT_LOAD, sim_state))
        say("* its console (the firmware's REPL): %s: `make repl` in another terminal"
            % answer.get("console"))
        await self._until_online()

    async def _until_online(self):
        """Ready means the charger is connected and its BootNotification was accepted."""
        deadline = time.monotonic() + ONLINE_TIMEOUT
        answer = {}
        while time.monotonic() < deadline:
            answer = await self.control.ask(cmd="status")
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
        mqtt = answer.get("mqtt") or {}
        say("! charger %s not online after %d s (MQTT %s%s); commands still work, see %s"
            % (self.cp, ONLINE_TIMEOUT, mqtt.get("state", "?"),
               ": " + mqtt["last_error"] if mqtt.get("last_error") else "",
               os.path.join(self.state, self.cp, "firmware.log")))

    def _sim_log_tail(self, limit=2000):
        try:
            with open(self.sim_log, errors="replace") as f:
                return f.read()[-limit:].rstrip()
        except (OSError, TypeError):
            return "(no log)"

    # -- live view ----------------------------------------------------------------------------

    async def poll(self):
        shown = None
        shown_wh = None
        shown_at = 0.0
        shown_firmware = firmware_key(self.last_answer or {})  # said already by start()
        while True:
            try:
                answer = await self.control.ask(cmd="status")
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

    async def _sim(self, **req):
        answer = await self.control.ask(**req)
        if not answer.get("ok"):
            return "charger: %s" % answer.get("error")
        self.last_answer = answer
        return None

    def _transaction_id(self):
        answer = self.last_answer
        if answer:
            tx = answer["connectors"]["1"].get("transaction_id")
            if tx is not None:
                return tx
        for tx in reversed(list(self.cs.chargers.get(self.cp).transactions.values())
                           if self.cp in self.cs.chargers else []):
            if not tx.stopped:
                return tx.id
        return None

    async def execute(self, line):
        """Run one command line; return text to print (or None)."""
        words = line.split()
        if not words:
            return None
        name = ALIASES.get(words[0].lower(), words[0].lower())
        args = words[1:]
        cp = self.cp
        if name == "help":
            return HELP
        if name == "quit":
            self.stopping.set()
            return "stopping"
        if name in ("plug", "pause"):
            return await self._sim(cmd="ev", connector=1, state="B")
        if name == "charge":
            return await self._sim(cmd="ev", connector=1, state="C")
        if name == "unplug":
            return await self._sim(cmd="ev", connector=1, state="A")
        if name == "tap":
            return await self._sim(cmd="rfid", uid=args[0] if args else DEFAULT_TAG)
        if name == "load":
            try:
                amps = float(args[0])
            except (IndexError, ValueError):
                return "usage: load AMPS"
            return await self._sim(cmd="load", connector=1, amps=amps)
        if name == "fault":
            return await self._sim(cmd="fault", connector=1, kind="rcd")
        if name == "clear":
            return await self._sim(cmd="fault", connector=1, kind="clear")
        if name == "status":
            answer = await self.control.ask(cmd="status")
            if not answer.get("ok"):
                return "charger: %s" % answer.get("error")
            self.last_answer = answer
            line = firmware_line(cp, answer)
            return status_line(cp, answer) + ("\n" + line if line else "")
        if name == "remote-start":
            return await self.cs.remote_start(cp, args[0] if args else DEFAULT_TAG, 1)
        if name == "remote-stop":
            if args:
                try:
                    tx = int(args[0])
                except ValueError:
                    return "usage: remote-stop [TRANSACTION_ID]"
            else:
                tx = self._transaction_id()
            if tx is None:
                return "no transaction running"
            return await self.cs.remote_stop(cp, tx)
        if name == "reset":
            if len(args) != 1 or args[0].lower() not in ("soft", "hard"):
                return "usage: reset soft|hard"
            return await self.cs.reset(cp, args[0].lower())
        if name == "config":
            if len(args) < 2:
                return "usage: config KEY VALUE"
            return await self.cs.change_configuration(cp, args[0], " ".join(args[1:]))
        if name == "get":
            result = await self.cs.get_configuration(cp, args or None)
            rows = ["  %s = %s%s" % (k.get("key"), k.get("value"), " (read-only)" if k.get("readonly") else "")
                    for k in result.get("configurationKey") or []]
            if result.get("unknownKey"):
                rows.append("  unknown: " + ", ".join(result["unknownKey"]))
            return "\n".join(["%s:" % " ".join(words)] + rows) if rows else result
        if name == "trigger":
            if len(args) != 1:
                return "usage: trigger MESSAGE (e.g. StatusNotification)"
            return await self.cs.trigger_message(cp, args[0])
        return "unknown command %r; type help" % words[0]

    async def run_command(self, line):
        label = line.strip()
        try:
            result = await self.execute(line)
        except asyncio.CancelledError:
            raise
        except asyncio.TimeoutError:
            result = "no answer in time"
        except Exception as e:  # an OCPP CALLERROR, a lost socket...: one line, never a traceback
            result = "%s: %s" % (type(e).__name__, getattr(e, "description", None) or e)
        if result is None:
            return
        if isinstance(result, dict):
            result = json.dumps(result)
        if "\n" in result:
            say(result)
        else:
            say("%s: %s" % (label, result))

    async def read_commands(self, lines):
        while True:
            line = await lines.get()
            if line is None:  # EOF: keep running until a signal
                return
            if not line.strip():
                continue
            if ALIASES.get(line.split()[0].lower(), line.split()[0].lower()) == "quit":
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
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.control:
            self.control.close()
        if self.sim and self.sim.returncode is None:
            self.sim.terminate()
            try:
                await asyncio.wait_for(self.sim.wait(), 10)
            except asyncio.TimeoutError:
                self.sim.kill()
                await self.sim.wait()
        if self.cs:
            await self.cs.stop()
        if self.broker:
            await asyncio.get_running_loop().run_in_executor(None, self.broker.stop)
        say("* stopped")


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m tools.devsim", description=__doc__.split("\n")[0],
                                epilog=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--state", default=os.path.join(ROOT, "state"),
                   help="folder for the PKI, broker and charger flash (default %(default)s)")
    p.add_argument("--port", type=int, default=None,
                   help="broker port; 0 = any free one (default 8883 if free, else any)")
    p.add_argument("--id", default="CP001", help="charge point id (default %(default)s)")
    a = p.parse_args(argv)
    if a.port is not None and not 0 <= a.port < 65536:
        p.error("--port must be 0..65535")
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
