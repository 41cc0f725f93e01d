"""Command line of the development Central System: prints every frame and takes commands on stdin."""

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import threading

from tools.csms import CentralSystem
from tools.csms_commands import DEFAULT_TAG, TABLE, Front, execute


class Console(Front):
    """The command line's side of the commands: each names its charger; results as JSON."""

    table = TABLE

    def __init__(self, cs, stopping):
        self.cs = cs
        self.stopping = stopping

    def quit(self):
        self.stopping.set()
        return None


HELP = TABLE.help(True)


def print_frame(charger_id, frame):
    arrow = "->" if frame.direction == "in" else "<-"
    print("%s %s %s CSMS  %s" % (frame.time[11:23], charger_id, arrow, frame.text), flush=True)


class FrameLog:
    """Appends every frame to a JSON-lines file: {"time", "charger", "direction", "text"}."""

    def __init__(self, path):
        self._file = open(path, "a", encoding="utf-8")

    def __call__(self, charger_id, frame):
        record = {"time": frame.time, "charger": charger_id, "direction": frame.direction,
                  "text": frame.text}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def close(self):
        self._file.close()


def _reads_stdin():
    """Commands come from a pipe or a terminal we own; a background job must not touch the TTY."""
    try:
        if os.isatty(0):
            return os.tcgetpgrp(0) == os.getpgrp()
        return True
    except OSError:
        return False


def _start_reader(loop, lines):
    def read():
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line)
        loop.call_soon_threadsafe(lines.put_nowait, None)

    threading.Thread(target=read, name="csms-stdin", daemon=True).start()


async def serve(cs, interactive):
    """Run the Central System until `quit`, SIGTERM or SIGINT; answer stdin commands meanwhile."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    run = asyncio.ensure_future(cs.run())
    lines = asyncio.Queue()
    if interactive:
        _start_reader(loop, lines)
    prompt = os.isatty(0) and interactive
    pending = set()
    console = Console(cs, stopping)

    async def answer(line):
        text = await execute(console, line)
        if text:
            print(text, flush=True)

    async def read_commands():
        while True:
            line = await lines.get()
            if line is None:  # EOF: keep serving without a prompt
                return
            task = asyncio.ensure_future(answer(line))
            pending.add(task)
            task.add_done_callback(pending.discard)

    if prompt:
        print("csms ready; type help", flush=True)
    reader = asyncio.ensure_future(read_commands())
    try:
        await asyncio.wait([run, asyncio.ensure_future(stopping.wait())],
                           return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (reader, run, *pending):
            task.cancel()
        await asyncio.gather(reader, run, *pending, return_exceptions=True)


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python3 -m tools.csms", description=__doc__,
                                     epilog=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--broker", default="127.0.0.1:8883", help="HOST:PORT (default %(default)s)")
    parser.add_argument("--pki", metavar="DIR",
                        help="folder from tools.certs: defaults --ca/--cert/--key to ca.pem, "
                             "csms.pem, csms.key there")
    parser.add_argument("--ca", help="CA certificate the broker's certificate must chain to")
    parser.add_argument("--cert", help="our client certificate (CN csms)")
    parser.add_argument("--key", help="its private key")
    parser.add_argument("--authorize", nargs="+", action="extend", metavar="TAG",
                        help="idTags answered Accepted (default 04A1B2C3D4E5F6)")
    parser.add_argument("--vendor", action="append", default=[], metavar="VENDOR_ID",
                        help="DataTransfer vendorId answered Accepted (repeatable)")
    parser.add_argument("--heartbeat", type=int, default=300,
                        help="interval in BootNotification.conf, seconds (default %(default)s)")
    parser.add_argument("--timeout", type=float, default=30,
                        help="seconds to wait for a charger's answer (default %(default)s)")
    parser.add_argument("--client-id", default="csms", help="MQTT client id (default %(default)s)")
    parser.add_argument("--log", metavar="FILE", help="append every frame as a JSON line")
    parser.add_argument("--quiet", action="store_true", help="do not print frames")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    if args.pki:
        args.ca = args.ca or os.path.join(args.pki, "ca.pem")
        args.cert = args.cert or os.path.join(args.pki, "csms.pem")
        args.key = args.key or os.path.join(args.pki, "csms.key")
    if not (args.ca and args.cert and args.key):
        parser.error("give --ca, --cert and --key (or --pki DIR)")
    host, _, port = args.broker.rpartition(":")
    if not host or not port.isdigit():
        parser.error("--broker must be HOST:PORT")
    args.host, args.port = host, int(port)
    return args


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if not args.verbose:
        logging.getLogger("ocpp").setLevel(logging.CRITICAL)  # we print frames ourselves
    cs = CentralSystem(
        args.host, args.port, args.ca, args.cert, args.key,
        authorized=args.authorize or (DEFAULT_TAG,), heartbeat_interval=args.heartbeat,
        vendors=args.vendor, response_timeout=args.timeout, client_id=args.client_id)
    if not args.quiet:
        cs.frame_listeners.append(print_frame)
    frame_log = FrameLog(args.log) if args.log else None
    if frame_log:
        cs.frame_listeners.append(frame_log)
    try:
        asyncio.run(serve(cs, _reads_stdin()))
    finally:
        if frame_log:
            frame_log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
