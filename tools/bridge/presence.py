"""Chargers coming and going on the broker: AWS IoT's lifecycle events, or the lines the local
stand-in (tools.broker: Mosquitto with `log_dest topic`) logs to `$SYS/broker/log/N`.

`event(topic, payload)` -> (client id, True for connected / False for gone), or None for
anything else. A takeover (the same client id connecting again, the older connection closed
by the broker) is no absence: AWS reports it as a disconnect with reason DUPLICATE_CLIENTID,
possibly after the new connection's connect event, and it is ignored; Mosquitto logs
"already connected, closing old connection" and then the new connection, and neither is a
disconnect.
"""
import json
import re

from tools.policy import BRIDGE_PRESENCE_AWS, BRIDGE_PRESENCE_STANDIN

TOPICS = (BRIDGE_PRESENCE_AWS, BRIDGE_PRESENCE_STANDIN)
_AWS_PREFIX = "$aws/events/presence/"
_TAKEOVER = "DUPLICATE_CLIENTID"
# Mosquitto 2.0 notice lines (src/handle_connect.c, loop.c, ...), after its timestamp.
_CONNECTED = re.compile(r"New client connected from \S+ as (.+) \(p\d")
_GONE = re.compile(r"Client (.+?) (?:disconnected|closed its connection|has exceeded timeout)")
_SOCKET_ERROR = re.compile(r"Socket error on client (.+), disconnecting")


def event(topic, payload):
    if topic.startswith(_AWS_PREFIX):
        return _aws(topic, payload)
    if topic == BRIDGE_PRESENCE_STANDIN:
        return _mosquitto(payload.decode("utf-8", "replace"))
    return None


def _aws(topic, payload):
    kind, _, client_id = topic[len(_AWS_PREFIX):].partition("/")
    if not client_id or kind not in ("connected", "disconnected"):
        return None
    if kind == "connected":
        return client_id, True
    try:
        reason = json.loads(payload).get("disconnectReason")
    except (ValueError, AttributeError):
        reason = None
    return None if reason == _TAKEOVER else (client_id, False)


def _mosquitto(line):
    found = _CONNECTED.search(line)
    if found:
        return found.group(1), True
    found = _GONE.search(line) or _SOCKET_ERROR.search(line)
    if found and found.group(1) != "<unknown>":
        return found.group(1), False
    return None
