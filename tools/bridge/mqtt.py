"""The bridge's MQTT connection: paho-mqtt with a persistent session and manual
acknowledgements, fed to and driven from asyncio.

Mechanism only (the policy is in link.py): every message arrives as `on_frame(topic, payload,
token)` on the event loop, and is acknowledged to the broker when `token.ack()` is called, not
before. A token belongs to one connection: after a reconnect the broker sends every
unacknowledged message again (persistent session, clean_session=False), so a token of an
older connection is stale (`token.current()` False) and its message must not be written: its
copy is on the way. Publishes are paced to `rate` a second (AWS IoT: 100 publishes per
second per connection) and `publish()` returns once the broker's PUBACK came. Reconnects wait
at least 1 s (AWS IoT: one CONNECT per second per client id) and back off to 30 s.
"""
import asyncio
import logging
import socket
import ssl
import threading

import paho.mqtt.client as paho

LOG = logging.getLogger("bridge.mqtt")
QOS = 1
KEEPALIVE = 30  # AWS IoT's smallest
RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 30


def tls_context(ca, cert, key):
    """Mutual TLS: the broker checked against `ca` (host name included), our certificate shown."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    context.load_cert_chain(cert, key)
    return context


class Pacer:
    """At most `rate` events a second, in bursts of up to `rate` (a token bucket)."""

    def __init__(self, rate, clock):
        self.rate = float(rate)
        self._clock = clock
        self._tokens = self.rate
        self._at = clock()
        self._lock = asyncio.Lock()

    async def take(self):
        async with self._lock:
            while True:
                now = self._clock()
                self._tokens = min(self.rate, self._tokens + (now - self._at) * self.rate)
                self._at = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await asyncio.sleep((1 - self._tokens) / self.rate)


class Token:
    """One received message, to acknowledge once it has been handled."""

    __slots__ = ("connection", "generation", "mid", "qos", "dup")

    def __init__(self, connection, generation, mid, qos, dup):
        self.connection, self.generation, self.mid, self.qos = connection, generation, mid, qos
        self.dup = dup  # sent again by the broker (after a reconnect of ours)

    def current(self):
        """True while the connection it came on is up: an ack for it reaches the broker."""
        return self.connection.connected and self.generation == self.connection.connections

    def ack(self):
        """PUBACK it, if its connection is still the one up (else the broker sends it again)."""
        if self.qos and self.current():
            self.connection.ack(self.mid, self.qos)


class MqttConnection:
    """One MQTT connection: `start()`, `stop()`, `publish()`; `connected`, `connections` (how
    many CONNACKs so far) and `published` (PUBACKs for our publishes) for health and metrics."""

    def __init__(self, host, port, tls, client_id, subscriptions, on_frame, rate=100,
                 on_up=None):
        self.host, self.port = host, port
        self.client_id = client_id
        self.subscriptions = tuple(subscriptions)
        self.connected = False
        self.connections = 0  # the generation: tokens carry it
        self.published = 0
        self._on_frame = on_frame
        self._on_up = on_up  # called with the generation after each CONNACK
        self._loop = None
        self._pacer = None
        self._rate = rate
        self._acks = {}  # mid -> future for our publishes
        self._early = set()  # mids whose PUBACK came before publish() registered them
        self._lock = threading.Lock()
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id,
                             clean_session=False, protocol=paho.MQTTv311, manual_ack=True)
        client.tls_set_context(tls)
        client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        # paho's own queue: nothing published is refused while we are away, and every
        # publish waits for its PUBACK before the next one of the same caller anyway
        client.max_inflight_messages_set(100)  # AWS IoT's limit of unacknowledged QoS 1
        client.on_connect = self._connected
        client.on_disconnect = self._disconnected
        client.on_message = self._message
        client.on_publish = self._published
        self._client = client

    # -- paho's thread ------------------------------------------------------------------------

    def _connected(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            LOG.warning("broker refused us: %s", reason_code, extra={"event": "mqtt_refused"})
            return
        # Whether or not the session was kept: subscribing again is harmless and covers a
        # session the broker has expired (AWS: after an hour by default).
        for topic in self.subscriptions:
            client.subscribe(topic, QOS)
        # Nagle off: a frame published behind a PUBACK would wait for the delayed ACK
        client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._loop.call_soon_threadsafe(self._state, True, flags.session_present)

    def _disconnected(self, client, userdata, flags, reason_code, properties):
        self._loop.call_soon_threadsafe(self._state, False, None)

    def _message(self, client, userdata, message):
        # (its connection's CONNACK is handled on the loop before it: calls keep their order)
        self._loop.call_soon_threadsafe(self._deliver, message.topic, message.payload,
                                        message.mid, message.qos, message.dup)

    def _published(self, client, userdata, mid, reason_code, properties):
        # (paho calls this holding its own lock: ours is never held while calling paho)
        with self._lock:
            future = self._acks.pop(mid, None)
            if future is None:
                self._early.add(mid)  # acknowledged before publish() registered it
        if future is not None:
            self._loop.call_soon_threadsafe(_settle, future)

    # -- the event loop -----------------------------------------------------------------------

    def _state(self, connected, session_present):
        if connected:
            self.connections += 1
            LOG.info("connected to %s:%s as %s (session kept: %s)", self.host, self.port,
                     self.client_id, session_present, extra={"event": "mqtt_connected"})
        else:
            LOG.warning("connection to %s:%s lost", self.host, self.port,
                        extra={"event": "mqtt_lost"})
        self.connected = connected
        if connected and self._on_up is not None:
            self._on_up(self.connections)

    def _deliver(self, topic, payload, mid, qos, dup):
        self._on_frame(topic, payload, Token(self, self.connections, mid, qos, dup))

    def ack(self, mid, qos):
        self._client.ack(mid, qos)

    async def publish(self, topic, payload):
        """Publish at QoS 1, paced; returns once the broker acknowledged it (after reconnects
        if need be: paho sends it again on the next connection)."""
        await self._pacer.take()
        info = self._client.publish(topic, payload, QOS)
        if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):  # kept when NO_CONN
            raise ConnectionError("publish to %s: %s" % (topic, paho.error_string(info.rc)))
        future = self._loop.create_future()
        with self._lock:
            early = info.mid in self._early
            if early:
                self._early.discard(info.mid)
            else:
                self._acks[info.mid] = future
        if not early:
            await future
        self.published += 1

    async def start(self):
        self._loop = asyncio.get_running_loop()
        self._pacer = Pacer(self._rate, self._loop.time)
        self._client.connect_async(self.host, self.port, KEEPALIVE)
        self._client.loop_start()

    async def stop(self):
        client = self._client
        await asyncio.to_thread(client.disconnect)
        await asyncio.to_thread(client.loop_stop)


def _settle(future):
    if not future.done():
        future.set_result(None)
