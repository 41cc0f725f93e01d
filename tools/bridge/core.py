"""The bridge: one MQTT connection in, one ChargerLink per charger of its shard out, the
presence news routed to the links, the figures /metrics shows."""
import asyncio
import json
import logging
import os
import ssl
import urllib.parse

from tools.bridge import presence, shard
from tools.bridge.link import ChargerLink
from tools.bridge.mqtt import MqttConnection
from tools.basic_auth import basic_authorization

LOG = logging.getLogger("bridge")
IN_SUFFIX = "/in"
OUT_SUFFIX = "/out"


class Metrics:
    """Counters and gauges, rendered in the Prometheus text format."""

    def __init__(self):
        self.online = 0  # chargers of this shard connected to the broker
        self.websockets = 0  # open now
        self.to_csms = 0  # frames written to a WebSocket
        self.to_charger = 0  # messages published to a charger
        self.reconnects = 0  # WebSockets opened again while their charger stayed wanted
        self.held = 0  # frames received, not yet written (unacknowledged to the broker)
        self.dropped = 0  # frames acknowledged without being written, or messages refused

    def render(self, pool=()):
        """The text of /metrics; `pool`: the MQTT connections, for their own figures."""
        rows = (
            ("bridge_chargers_online", "gauge", "Chargers of this shard connected to the broker",
             [("", self.online)]),
            ("bridge_websockets_open", "gauge", "WebSockets open to the Central System",
             [("", self.websockets)]),
            ("bridge_frames_total", "counter", "Frames moved, by direction",
             [('{direction="to_csms"}', self.to_csms),
              ('{direction="to_charger"}', self.to_charger)]),
            ("bridge_websocket_reconnects_total", "counter",
             "WebSockets opened again for a charger still wanted", [("", self.reconnects)]),
            ("bridge_frames_held", "gauge", "Frames received and not yet written",
             [("", self.held)]),
            ("bridge_frames_dropped_total", "counter",
             "Frames acknowledged unwritten (charger refused), or messages not published",
             [("", self.dropped)]),
            ("bridge_mqtt_connections_up", "gauge", "MQTT connections up (of the pool)",
             [("", sum(1 for c in pool if c.connected))]),
            ("bridge_mqtt_publishes_total", "counter", "Publishes the broker acknowledged",
             [('{connection="%d"}' % k, c.published) for k, c in enumerate(pool)]),
        )
        lines = []
        for name, kind, text, samples in rows:
            lines += ["# HELP %s %s" % (name, text), "# TYPE %s %s" % (name, kind)]
            lines += ["%s%s %d" % (name, labels, value) for labels, value in samples]
        return "\n".join(lines) + "\n"


def load_auth(path):
    """--auth FILE: {"CP001": "<AuthorizationKey>"} -> {id: Basic header value}, the password
    the key's bytes as the firmware sends them (hex-decoded for 32..40 hex digits)."""
    with open(path) as f:
        keys = json.load(f)
    if not isinstance(keys, dict):
        raise ValueError("%s: a JSON object {charger id: AuthorizationKey} expected" % path)
    return {cp_id: basic_authorization(cp_id, key) for cp_id, key in keys.items()}


class Bridge:
    """`await bridge.run()` until cancelled. `mqtt_tls`: ssl context for the broker; `csms`:
    the Central System's base URL; `shard_index`/`shard_count`: which chargers are ours;
    `auth`: {id: Basic header}; `certs`: a folder of <id>.pem/<id>.key client certificates
    for wss:// (security profile 3); `csms_ca`: the CA file wss:// is checked against."""

    def __init__(self, broker, mqtt_tls, client_id, csms, *, csms_ca=None, auth=None,
                 certs=None, shard_index=0, shard_count=1, inbound="+/in", publish_rate=100,
                 connections=1, presence_grace=30.0):
        host, _, port = broker.rpartition(":")
        self.csms = csms.rstrip("/")
        self.shard_index, self.shard_count = shard_index, shard_count
        self.auth = dict(auth or {})
        self.certs = certs
        self.metrics = Metrics()
        self.links = {}  # charger id -> ChargerLink, while it has a task
        self.news = {}  # charger id (ours) -> the broker's latest: True connected, False gone
        self.known = set(self.auth)  # charger ids: sent a frame, or have credentials
        self._online = set()  # known ids whose latest news is "connected"
        self.presence_grace = presence_grace
        self._tasks = {}
        self._csms_ca = csms_ca
        self._ssl = {}  # charger id -> its ssl context (wss:// only)
        self._secure = self.csms.startswith("wss://")
        # The pool: connection k is client id `client_id` (k = 0) or `client_id-k`. With a
        # {bucket} in `inbound` each reads its own bucket (AWS: one rule per bucket), else
        # the first reads everything; each publishes for its own chargers; the first also
        # reads the presence news.
        self.pool = []
        for k in range(connections):
            if "{bucket}" in inbound:
                topics = (inbound.format(bucket=shard.bucket(shard_index, shard_count, k)),)
            else:
                topics = (inbound,) if k == 0 else ()
            if k == 0:
                topics += presence.TOPICS
            self.pool.append(MqttConnection(
                host.strip("[]"), int(port), mqtt_tls, client_id + ("-%d" % k if k else ""),
                topics, self._on_message, rate=publish_rate,
                on_up=self._news_resumed if k == 0 else None))

    # -- what the links ask for ------------------------------------------------------------

    def url_of(self, cp_id):
        return self.csms + "/" + urllib.parse.quote(cp_id, safe="")

    def headers_of(self, cp_id):
        header = self.auth.get(cp_id)
        return {"Authorization": header} if header else None

    def ssl_of(self, cp_id):
        if not self._secure:
            return None
        context = self._ssl.get(cp_id)
        if context is None:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self._csms_ca)
            cert = self.certs and os.path.join(self.certs, cp_id + ".pem")
            if cert and os.path.exists(cert):
                context.load_cert_chain(cert, os.path.join(self.certs, cp_id + ".key"))
            self._ssl[cp_id] = context
        return context

    def out_topic(self, cp_id):
        return cp_id + OUT_SUFFIX

    def publisher_of(self, cp_id):
        """The MQTT connection that carries the charger's /out."""
        return self.pool[shard.connection_of(cp_id, self.shard_count, len(self.pool))]

    @property
    def healthy(self):
        """Every connection of the pool up."""
        return all(c.connected for c in self.pool)

    # -- MQTT in ----------------------------------------------------------------------------

    def ours(self, cp_id):
        return shard.shard_of(cp_id, self.shard_count) == self.shard_index

    def _on_message(self, topic, payload, token):
        news = presence.event(topic, payload)
        if news is not None:
            token.ack()
            self._presence(*news)
            return
        cp_id = _charger_of(topic)
        if cp_id is None or not self.ours(cp_id):
            token.ack()  # another instance's (it gets its own copy)
            return
        if cp_id not in self.known:
            self.known.add(cp_id)
            self._count_online(cp_id)
        self._link(cp_id).frame(payload, token)

    def _presence(self, cp_id, online):
        if not self.ours(cp_id):
            return
        self.news[cp_id] = online
        self._count_online(cp_id)
        link = self.links.get(cp_id)
        if link is None and online and cp_id in self.known:
            link = self._link(cp_id)
        if link is not None:
            link.presence(online)

    def _link(self, cp_id):
        """The charger's link, its task started if it has none."""
        link = self.links.get(cp_id)
        if link is None:
            link = self.links[cp_id] = ChargerLink(cp_id, self)
            link.online = self.news.get(cp_id)
        if cp_id not in self._tasks:
            task = asyncio.ensure_future(link.run())
            self._tasks[cp_id] = task
            task.add_done_callback(lambda t, cp_id=cp_id: self._ended(cp_id, t))
        return link

    def _news_resumed(self, generation):
        """The connection that reads presence is up again: what came meanwhile is lost."""
        if generation == 1:
            return
        self.news.clear()
        self._online.clear()
        self.metrics.online = 0
        for link in self.links.values():
            link.unconfirm(self.presence_grace)

    def _count_online(self, cp_id):
        if self.news.get(cp_id) and cp_id in self.known:
            self._online.add(cp_id)
        else:
            self._online.discard(cp_id)
        self.metrics.online = len(self._online)

    def _ended(self, cp_id, task):
        self._tasks.pop(cp_id, None)
        link = self.links.get(cp_id)
        if task.cancelled() or link is None:
            return
        error = task.exception()
        if error is not None:  # a bug: logged, and the link again in a second if wanted
            LOG.error("link failed: %r", error, extra={"charger": cp_id, "event": "bug"})
        if not link.wanted:
            del self.links[cp_id]
        elif error is not None:
            asyncio.get_running_loop().call_later(1, self._link, cp_id)
        else:
            self._link(cp_id)  # a frame came while it was closing: open again

    # -- lifecycle --------------------------------------------------------------------------

    async def run(self):
        for connection in self.pool:
            await connection.start()
        try:
            await asyncio.get_running_loop().create_future()
        finally:
            tasks = list(self._tasks.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.gather(*(connection.stop() for connection in self.pool))


def _charger_of(topic):
    """The charger id of an inbound topic: the level before /in (`CP001/in`, or the rule's
    `bridge/<shard>/CP001/in`), or None."""
    if not topic.endswith(IN_SUFFIX):
        return None
    levels = topic[: -len(IN_SUFFIX)].split("/")
    return levels[-1] or None
