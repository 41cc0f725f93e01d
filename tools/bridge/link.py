"""One charger's WebSocket to the Central System: opened when the charger is present or has
frames for it, kept while it is present, closed soon after it goes; its frames written in
order, each acknowledged to the broker only once written; the Central System's text messages
published back to the charger.

Choices where the issue leaves room:
- Held frames: a frame stays unacknowledged (held) until written, so the broker's in-flight
  window for the bridge's connection (Mosquitto max_inflight_messages, 20 by default; AWS IoT
  100) bounds what is held, and the broker keeps the rest in the bridge's persistent session:
  the push-back. A link that cannot connect holds its frames and retries with back-off
  (BACKOFF_FIRST_S doubling to BACKOFF_MAX_S, with jitter).
- A refusal is an answer, not an outage: a handshake answered 4xx (unknown charger, wrong
  credentials) or without `ocpp1.6` declares the charger unwelcome for the back-off period.
  Its frames are then acknowledged and dropped (counted, logged): a charger connected
  directly would have been refused too, and holding them would stall every other charger on
  the connection behind the broker's window.
- Gone: once the broker says the charger left and its held frames are written, the link
  waits LINGER_S for more (frames may trail the presence news) and closes with 1001.
- Present without news: a bridge that starts (or restarts) has missed the connects of the
  chargers already there. A frame is taken as evidence that its charger is connected until
  the broker says otherwise, or until UNCONFIRMED_S pass without a frame (a frame
  redelivered from the session of a charger that left while the bridge was down: its
  disconnect news is lost for good; longer than two Heartbeat intervals of 300 s). When the
  news itself was interrupted (the MQTT connection that reads it lost and back), what it
  said is forgotten (`unconfirm(grace)`): a charger not heard of again, by news or frame,
  within the grace counts as gone.
- The Central System's binary messages are not OCPP-J: closed with 1003, as the firmware does.
"""
import asyncio
import collections
import logging
import random

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from tools.bridge.logs import ChargerLog

LOG = logging.getLogger("bridge.link")
SUBPROTOCOL = "ocpp1.6"
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 10.0
LINGER_S = 1.0
STABLE_S = 10.0  # a link that lasted this long resets the back-off
UNCONFIRMED_S = 660.0
OPEN_TIMEOUT_S = 10
CLOSE_TIMEOUT_S = 5
MAX_MESSAGE = 131072  # AWS IoT's payload limit: a larger message could not be published


class Refused(Exception):
    """The Central System answered the handshake, and it was no."""


class ChargerLink:
    """`frame(payload, token)` and `presence(online)` feed it; `run()` is its task, which
    ends when the charger is gone and nothing is held. `bridge` gives the MQTT connection,
    the metrics and the connection settings (tools.bridge.core.Bridge)."""

    def __init__(self, cp_id, bridge):
        self.cp_id = cp_id
        self.bridge = bridge
        self.held = collections.deque()  # (payload bytes, token), oldest first
        self.online = None  # the broker's latest news: True, False, or None (none heard)
        self.present_until = None  # without news: loop time until which a frame vouches
        self.refused_until = None
        self._wake = asyncio.Event()
        self._log = ChargerLog(LOG, {"charger": cp_id})

    def present(self):
        """Connected to the broker, as far as we know."""
        if self.online is not None:
            return self.online
        return self.present_until is not None and \
            asyncio.get_running_loop().time() < self.present_until

    @property
    def wanted(self):
        return self.present() or bool(self.held)

    def frame(self, payload, token):
        metrics = self.bridge.metrics
        loop_time = asyncio.get_running_loop().time()
        if self.refused_until is not None and loop_time < self.refused_until:
            token.ack()
            metrics.dropped += 1
            self._log.warning("frame dropped: the Central System refused this charger",
                              extra={"event": "dropped"})
            return
        if not token.dup:  # a frame sent again says nothing of the charger now
            self.present_until = max(self.present_until or 0, loop_time + UNCONFIRMED_S)
        self.held.append((payload, token))
        metrics.held += 1
        self._wake.set()

    def presence(self, online):
        self.online = online
        self._wake.set()

    def unconfirm(self, grace):
        """The news was interrupted: present for `grace` seconds more unless heard of again."""
        if self.present():
            self.present_until = asyncio.get_running_loop().time() + grace
        self.online = None
        self._wake.set()

    async def run(self):
        delay = BACKOFF_FIRST_S
        opened = 0
        try:
            while self.wanted:
                try:
                    ws = await self._connect()
                except Refused as e:
                    self._refused(str(e), delay)
                except (OSError, asyncio.TimeoutError, InvalidHandshake) as e:
                    self._log.warning("Central System unreachable: %s: %s", type(e).__name__, e,
                                      extra={"event": "unreachable"})
                else:
                    self.refused_until = None
                    opened += 1
                    if opened > 1:
                        self.bridge.metrics.reconnects += 1
                    began = asyncio.get_running_loop().time()
                    if await self._connected(ws):
                        return  # the charger is gone: closed on purpose
                    if asyncio.get_running_loop().time() - began > STABLE_S:
                        delay = BACKOFF_FIRST_S
                        continue  # the Central System closed a good link: again at once
                await self._sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, BACKOFF_MAX_S)
        finally:
            self._forget_stale()

    async def _connect(self):
        bridge = self.bridge
        try:
            ws = await connect(
                bridge.url_of(self.cp_id), subprotocols=[SUBPROTOCOL],
                ssl=bridge.ssl_of(self.cp_id), additional_headers=bridge.headers_of(self.cp_id),
                compression=None,
                open_timeout=OPEN_TIMEOUT_S, close_timeout=CLOSE_TIMEOUT_S, ping_interval=None,
                max_size=MAX_MESSAGE, user_agent_header=None, proxy=None)
        except InvalidStatus as e:
            status = e.response.status_code
            if 400 <= status < 500:
                raise Refused("HTTP %d" % status) from None
            raise
        if ws.subprotocol != SUBPROTOCOL:
            await ws.close(1002, "the ocpp1.6 subprotocol is required")
            raise Refused("no ocpp1.6 subprotocol agreed (%r)" % ws.subprotocol)
        return ws

    def _refused(self, why, delay):
        loop_time = asyncio.get_running_loop().time()
        self.refused_until = loop_time + delay
        dropped = len(self.held)
        self._log.error("Central System refused the charger (%s); %d held frames dropped", why,
                        dropped, extra={"event": "refused"})
        while self.held:
            _, token = self.held.popleft()
            token.ack()
        self.bridge.metrics.held -= dropped
        self.bridge.metrics.dropped += dropped

    async def _sleep(self, seconds):
        """Wait `seconds`, or less if the charger stops being wanted."""
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while self.wanted and loop.time() < end:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), end - loop.time())
            except asyncio.TimeoutError:
                pass

    async def _connected(self, ws):
        """Frames both ways until the charger is gone (True) or the link fails (False)."""
        metrics = self.bridge.metrics
        metrics.websockets += 1
        self._log.info("WebSocket open", extra={"event": "open"})
        reader = asyncio.ensure_future(self._read(ws))
        reader.add_done_callback(lambda _: self._wake.set())
        try:
            return await self._write(ws, reader)
        except ConnectionClosed:
            return False
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            metrics.websockets -= 1
            await ws.close(1001, "going away")  # the charger left, or the bridge stops
            self._log.info("WebSocket closed (%s)", ws.close_code, extra={"event": "close"})

    async def _write(self, ws, reader):
        metrics = self.bridge.metrics
        loop = asyncio.get_running_loop()
        gone_at = None
        while not reader.done():
            self._wake.clear()
            while self.held:
                payload, token = self.held[0]
                if token.current():
                    await ws.send(payload, text=True)  # the bytes as they came
                    metrics.to_csms += 1
                    token.ack()
                self.held.popleft()
                metrics.held -= 1
            present = self.present()
            if present and self.online:
                gone_at = None
                await self._wake.wait()
                continue
            if present:  # on a frame's word, for a while
                timeout = self.present_until - loop.time()
            else:
                gone_at = gone_at or loop.time()
                timeout = gone_at + LINGER_S - loop.time()
                if timeout <= 0:
                    return True
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except asyncio.TimeoutError:
                pass
        return False

    async def _read(self, ws):
        topic = self.bridge.out_topic(self.cp_id)
        mqtt = self.bridge.publisher_of(self.cp_id)
        while True:
            message = await ws.recv()
            if not isinstance(message, str):
                self.bridge.metrics.dropped += 1
                self._log.warning("binary message from the Central System: closing (1003)",
                                  extra={"event": "binary"})
                await ws.close(1003, "OCPP-J is text")
                return
            await mqtt.publish(topic, message.encode("utf-8"))
            self.bridge.metrics.to_charger += 1

    def _forget_stale(self):
        """Frames of an older MQTT connection: the broker sends them again, not ours to keep."""
        kept = collections.deque(f for f in self.held if f[1].current())
        self.bridge.metrics.held -= len(self.held) - len(kept)
        self.held = kept
