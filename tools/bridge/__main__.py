"""python3 -m tools.bridge --broker HOST:PORT --ca CA.pem --cert CERT.pem --key KEY.pem
--csms ws://HOST:PORT/PATH [--csms-ca CA.pem] [--auth FILE] [--shard I/N] [--http HOST:PORT]"""
import argparse
import asyncio
import signal
import sys

from tools.bridge import http, logs, shard
from tools.bridge.core import LOG, Bridge, load_auth
from tools.bridge.mqtt import tls_context


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python3 -m tools.bridge", description=(
        "The fleet bridge: chargers on MQTT (AWS IoT Core or the local stand-in), one OCPP-J "
        "WebSocket each to the Central System."))
    p.add_argument("--broker", required=True, metavar="HOST:PORT")
    p.add_argument("--ca", required=True, help="the broker's CA (AWS: AmazonRootCA1.pem)")
    p.add_argument("--cert", required=True, help="the bridge's client certificate")
    p.add_argument("--key", required=True, help="its private key")
    p.add_argument("--csms", required=True, metavar="ws[s]://HOST:PORT/PATH",
                   help="the Central System; each charger's id is appended, percent-encoded")
    p.add_argument("--csms-ca", help="CA file to check the Central System's wss:// certificate")
    p.add_argument("--auth", metavar="FILE",
                   help='JSON {"CP001": "<AuthorizationKey hex>"}: HTTP Basic per charger')
    p.add_argument("--certs", metavar="DIR", help="client certificates per charger for wss:// "
                   "(security profile 3): DIR/<id>.pem and DIR/<id>.key")
    p.add_argument("--shard", default="0/1", metavar="I/N",
                   help="own the chargers with int(md5(id)[:4], 16) %% N == I (default 0/1)")
    p.add_argument("--http", metavar="HOST:PORT", help="serve /healthz and /metrics")
    p.add_argument("--client-id", help="MQTT client id (default bridge-I; on the stand-in the "
                   "certificate's CN is the client id whatever is given)")
    p.add_argument("--inbound", default="+/in", help="MQTT filter of the chargers' frames "
                   "(default +/in; on AWS with the republish rules: 'bridge/{bucket}/+/in')")
    p.add_argument("--connections", type=int, default=1, metavar="K",
                   help="MQTT connections per instance (AWS IoT: 100 publishes/s each); "
                   "client ids CLIENT_ID, CLIENT_ID-1, ... (default 1)")
    p.add_argument("--publish-rate", type=float, default=100,
                   help="publishes per second at most (AWS IoT: 100 per connection)")
    p.add_argument("--presence-grace", type=float, default=30.0, metavar="SECONDS",
                   help="after the MQTT connection that reads presence was lost, a charger "
                   "not heard of again within this long counts as gone (default 30)")
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args(argv)
    try:
        args.shard_index, args.shard_count = shard.parse(args.shard)
    except ValueError as e:
        p.error(str(e))
    if args.connections < 1:
        p.error("--connections must be 1 or more")
    if not args.csms.startswith(("ws://", "wss://")):
        p.error("--csms must be a ws:// or wss:// URL")
    return args


async def run(args):
    bridge = Bridge(args.broker, tls_context(args.ca, args.cert, args.key),
                    args.client_id or "bridge-%d" % args.shard_index, args.csms,
                    csms_ca=args.csms_ca, auth=load_auth(args.auth) if args.auth else None,
                    certs=args.certs, shard_index=args.shard_index,
                    shard_count=args.shard_count, inbound=args.inbound,
                    publish_rate=args.publish_rate, connections=args.connections,
                    presence_grace=args.presence_grace)
    server = None
    if args.http:
        host, _, port = args.http.rpartition(":")
        server = await http.serve(bridge, host or "0.0.0.0", int(port))
        LOG.info("HTTP on %s:%d", host, server.sockets[0].getsockname()[1],
                 extra={"event": "http"})
    task = asyncio.ensure_future(bridge.run())
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, task.cancel)
    LOG.info("shard %d/%d to %s", args.shard_index, args.shard_count, args.csms,
             extra={"event": "start"})
    try:
        await task
    except asyncio.CancelledError:
        pass
    finally:
        if server is not None:
            server.close()
    return 0


def main(argv=None):
    args = parse_args(argv)
    logs.setup(args.log_level)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
