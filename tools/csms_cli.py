"""Command line of the development Central System: prints every frame and takes commands on stdin.

Over MQTT (the default): a client of the broker (--broker, --pki or --ca/--cert/--key).
Over a WebSocket (--listen HOST:PORT): an OCPP-J server; chargers connect to
ws://HOST:PORT/ocpp/<id> (wss:// with --tls-cert/--tls-key) offering the subprotocol ocpp1.6.
Security profiles: 0 with no more flags; 1 with --keys (HTTP Basic); 2 with --keys and
--tls-cert/--tls-key; 3 with --tls-cert/--tls-key and --client-ca (client certificates).
"""

import argparse
import asyncio
import json
import logging
import os
import signal
import ssl
import sys
import threading

from tools.csms import CentralSystem
from tools.csms_commands import DEFAULT_TAG, TABLE, Front, execute
from tools.csms_websocket import (DEFAULT_PATH, WebSocketCentralSystem, authorization_password,
                                  server_tls_context)


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

    if isinstance(cs, WebSocketCentralSystem):  # say where, once it listens (or failed to)
        listening = asyncio.ensure_future(cs.wait_for(lambda: cs.connected, None))
        await asyncio.wait([run, listening], return_when=asyncio.FIRST_COMPLETED)
        listening.cancel()
        if cs.connected:
            print("csms listening on %s/<id>" % cs.url, flush=True)
    if prompt:
        print("csms ready; type help", flush=True)
    reader = asyncio.ensure_future(read_commands())
    try:
        await asyncio.wait([run, asyncio.ensure_future(stopping.wait())],
                           return_when=asyncio.FIRST_COMPLETED)
        if run.done() and not run.cancelled() and run.exception() is not None:
            raise run.exception()  # it could not start (the WebSocket's port taken, say)
    finally:
        for task in (reader, run, *pending):
            task.cancel()
        await asyncio.gather(reader, run, *pending, return_exceptions=True)


def _address(parser, text, flag):
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not int(port) < 65536:
        parser.error("%s must be HOST:PORT" % flag)
    return host.strip("[]"), int(port)


def load_keys(path):
    """--keys FILE: a JSON object {charge point id: AuthorizationKey}; ValueError if not."""
    with open(path, encoding="utf-8") as f:
        keys = json.load(f)
    if not isinstance(keys, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in keys.items()):
        raise ValueError("%s: a JSON object of charge point id -> AuthorizationKey" % path)
    for cp_id, key in keys.items():
        try:
            authorization_password(key)
        except ValueError as e:
            raise ValueError("%s: %s: %s" % (path, cp_id, e)) from None
    return keys


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python3 -m tools.csms", description=__doc__,
                                     epilog=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    mqtt = parser.add_argument_group("over MQTT (the default)")
    mqtt.add_argument("--broker", help="HOST:PORT (default 127.0.0.1:8883)")
    mqtt.add_argument("--pki", metavar="DIR",
                      help="folder from tools.certs: defaults --ca/--cert/--key to ca.pem, "
                           "csms.pem, csms.key there")
    mqtt.add_argument("--ca", help="CA certificate the broker's certificate must chain to")
    mqtt.add_argument("--cert", help="our client certificate (CN csms)")
    mqtt.add_argument("--key", help="its private key")
    mqtt.add_argument("--client-id", help="MQTT client id (default csms)")
    ws = parser.add_argument_group("over a WebSocket (OCPP-J)")
    ws.add_argument("--listen", metavar="HOST:PORT",
                    help="serve OCPP-J on HOST:PORT instead of MQTT; chargers connect to "
                         "ws[s]://HOST:PORT/ocpp/<id>")
    ws.add_argument("--path", default=DEFAULT_PATH,
                    help="the URL path before the charger's id (default %(default)s)")
    ws.add_argument("--keys", metavar="FILE",
                    help='JSON {"<id>": "<AuthorizationKey>"}: those chargers need HTTP Basic '
                         "auth (profiles 1, 2) and only they (and --allow) are let in")
    ws.add_argument("--allow", action="append", metavar="ID",
                    help="a charge point let in without a key (repeatable); with --allow or "
                         "--keys, other ids are refused with 404")
    ws.add_argument("--tls-cert", metavar="PEM", help="our server certificate: wss:// (profile 2, 3)")
    ws.add_argument("--tls-key", metavar="PEM", help="its private key")
    ws.add_argument("--client-ca", metavar="PEM",
                    help="CA the chargers' client certificates must chain to (profile 3): "
                         "required from every charger")
    parser.add_argument("--authorize", nargs="+", action="extend", metavar="TAG",
                        help="idTags answered Accepted (default 04A1B2C3D4E5F6)")
    parser.add_argument("--vendor", action="append", default=[], metavar="VENDOR_ID",
                        help="DataTransfer vendorId answered Accepted (repeatable)")
    parser.add_argument("--heartbeat", type=int, default=300,
                        help="interval in BootNotification.conf, seconds (default %(default)s)")
    parser.add_argument("--timeout", type=float, default=30,
                        help="seconds to wait for a charger's answer (default %(default)s)")
    parser.add_argument("--sign-csrs", metavar="DIR",
                        help="answer SignCertificate: the CA in DIR (tools.certs) issues the "
                             "certificate, sent in CertificateSigned")
    parser.add_argument("--log", metavar="FILE", help="append every frame as a JSON line")
    parser.add_argument("--quiet", action="store_true", help="do not print frames")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    if args.listen:
        given = [flag for flag in ("broker", "pki", "ca", "cert", "key", "client_id")
                 if getattr(args, flag)]
        if given:
            parser.error("--%s: for MQTT, not with --listen" % given[0].replace("_", "-"))
        args.host, args.port = _address(parser, args.listen, "--listen")
        if bool(args.tls_cert) != bool(args.tls_key):
            parser.error("give --tls-cert and --tls-key together")
        if args.client_ca and not args.tls_cert:
            parser.error("--client-ca needs --tls-cert and --tls-key (wss://)")
        if args.keys:
            try:
                args.keys = load_keys(args.keys)
            except (OSError, ValueError) as e:
                parser.error("--keys: %s" % e)
        return args
    given = [flag for flag in ("path", "keys", "allow", "tls_cert", "tls_key", "client_ca")
             if getattr(args, flag) and getattr(args, flag) != parser.get_default(flag)]
    if given:
        parser.error("--%s: for the WebSocket (with --listen)" % given[0].replace("_", "-"))
    args.broker = args.broker or "127.0.0.1:8883"
    args.client_id = args.client_id or "csms"
    if args.pki:
        args.ca = args.ca or os.path.join(args.pki, "ca.pem")
        args.cert = args.cert or os.path.join(args.pki, "csms.pem")
        args.key = args.key or os.path.join(args.pki, "csms.key")
    if not (args.ca and args.cert and args.key):
        parser.error("give --ca, --cert and --key (or --pki DIR)")
    args.host, args.port = _address(parser, args.broker, "--broker")
    return args


def central_system(args):
    """The Central System the command line asks for."""
    common = dict(authorized=args.authorize or (DEFAULT_TAG,), heartbeat_interval=args.heartbeat,
                  vendors=args.vendor, response_timeout=args.timeout)
    if args.sign_csrs:
        from tools.certs import signer_for

        common["signer"] = signer_for(args.sign_csrs)
    if args.listen:
        tls = None
        if args.tls_cert:
            tls = server_tls_context(args.tls_cert, args.tls_key, args.client_ca)
        return WebSocketCentralSystem(args.host, args.port, args.path, keys=args.keys, ssl=tls,
                                      chargers=args.allow, **common)
    return CentralSystem(args.host, args.port, args.ca, args.cert, args.key,
                         client_id=args.client_id, **common)


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if not args.verbose:
        logging.getLogger("ocpp").setLevel(logging.CRITICAL)  # we print frames ourselves
    try:
        cs = central_system(args)
    except (OSError, ssl.SSLError) as e:  # a certificate or key that does not load
        print("tools.csms: %s" % e, file=sys.stderr)
        return 2
    if not args.quiet:
        cs.frame_listeners.append(print_frame)
    frame_log = FrameLog(args.log) if args.log else None
    if frame_log:
        cs.frame_listeners.append(frame_log)
    try:
        asyncio.run(serve(cs, _reads_stdin()))
    except OSError as e:  # the address to listen on is taken
        print("tools.csms: %s" % e, file=sys.stderr)
        return 1
    finally:
        if frame_log:
            frame_log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
