"""OCPP-J frames over MQTT (AWS IoT Core): a never-blocking transport around umqtt.simple.

The OCPP engine polls this object from the asyncio loop; every blocking network call (DNS,
TCP connect, TLS handshake, CONNACK/SUBACK/PUBACK waits) happens in one network thread that
owns the `umqtt.simple.MQTTClient`. The two sides meet only in two small bounded mailboxes
(chargepoint.transport.mailbox) guarded by a lock, so an unplug handled on the asyncio side
never waits for the network.

Engine-facing interface (`tls_context` is chargepoint.transport.tls's)::

    t = MqttTransport("CP001", "xxxx-ats.iot.eu-west-1.amazonaws.com",
                      ssl=tls_context("ca.pem", "cert.pem", "key.pem"))
    t.start()
    t.connected          # MQTT session is up
    t.send(text)         # queue a frame for <id>/in at QoS 1; False when full, or for
                         # a CALL of ours while offline (an answer is kept for the session)
    t.can_send()         # connected and the outbox has room (for the answer to a frame)
    t.receive()          # None or (frame, stale) from <id>/out: the frame's bytes where
                         # they lie in the inbox (chargepoint.transport.mailbox.Inbox),
                         # valid until t.done() or the next receive(); (head text, stale,
                         # size) for a frame over MAX_FRAME, of which only the head was kept
    t.done()             # the engine is through with it: its room is free
    t.status             # dict: state, connects, failures, last_error, published, received,
                         # dropped, refused, oversize
    t.stop()

- Persistent session: CONNECT with clean_session=False; SUBSCRIBE (QoS 1) to the out topic
  only when CONNACK says session-present=0 (the broker kept the subscription otherwise).
- Outbox: at most `outbox_len` frames (8); past `outbox_bytes` (4 KB) it counts as full for
  `can_send()` (a frame already promised is still taken). A frame leaves it only after its
  PUBACK, so a
  link lost mid-publish republishes it after reconnecting (at least once). PUBLISHes are
  paced to 50 a second (AWS IoT allows 100 per connection); our own CALLs may go in bursts
  of up to `_BURST` back to back, answers keep to the pace: never more than 60 in any second.
- Inbox: at most `inbox_len` frames (24) and `inbox_bytes` of them (4 KB; one frame of any
  size is taken when the inbox is empty), in one buffer allocated once: the link reads a
  payload straight into it (TlsLink), and the engine parses it there (its room is free
  again once the engine is through with it: done()), so a frame never needs a block of its
  size; a payload the inbox has no room for is refused as below. The
  count is above the 20 messages Mosquitto has in flight to a client: a run of small frames
  (or heads of oversized CALLs) arriving during a PUBACK wait is taken, not refused. While
  it is full the thread stops reading the socket (back-pressure on the broker). A frame that
  arrives while it is full, during a PUBACK wait, is *refused*: the callback raises before
  umqtt sends its PUBACK, so the broker keeps it. From then on every PUBLISH is refused
  (order is kept) until the inbox has drained; then the thread disconnects and reconnects at
  once (only the 1 s CONNECT gap applies) and the persistent session redelivers what was
  refused. That backlog is not marked stale: it is seconds old. A frame that is
  acknowledged is therefore always handed to the engine; status["refused"] counts refusals.
  The engine takes a frame only when the outbox has room for its answer (`can_send()`).
  Frames on another topic or not UTF-8 are acknowledged and dropped (status["dropped"]).
- Oversize: a PUBLISH of any size is taken in bounded memory. Its payload, when larger than
  MAX_FRAME (chargepoint.ocpp.engine: 4 KB), is read through the link's buffer and
  dropped; it is acknowledged as any other (status["oversize"]). When its head reads as a
  CALL the engine gets the head and size, to answer it with a CALLERROR; any other is
  dropped here (status["dropped"]). The link stays up.

Latency: the thread sleeps on the socket, at most `_POLL_MS`; an inbound frame wakes the
engine and a frame the engine queues wakes the thread (chargepoint.transport.mailbox.NetThread);
a PUBLISH goes as one TLS record and one segment (TlsLink).

Policy (chargepoint.transport.policy): the thread body only calls `step()` and sleeps; when
to reconnect, when to ping and which frames are stale is decided by pure classes with an
injected `ticks_ms` clock. Mechanism (chargepoint.transport.tls): `TlsLink` bounds every
socket read and counts inbound bytes, which is how a PINGRESP (swallowed by umqtt) is noticed.
"""
from micropython import const

from chargepoint.ocpp.framing import MAX_FRAME, peek, utf8
from chargepoint.platform.clock import Clock, ticks_add, ticks_diff
from chargepoint.transport.mailbox import Inbox, Mailbox, NetThread
from chargepoint.transport.policy import KeepAlive, Reconnect, StaleWindow
from chargepoint.transport.tls import Oversize, TlsLink

MAX_PAYLOAD = const(131072)  # AWS IoT: 128 KB per message
_MAX_TOPIC = const(256)
_MAX_SLASHES = const(7)
_MAX_CLIENT_ID = const(128)
_POLL_MS = const(25)  # longest sleep of the thread on the socket (a frame queued rings it awake)
_SLICE_MS = const(200)  # longest sleep while backing off, so stop() is prompt
_PUBLISH_GAP_MS = const(20)  # 50 PUBLISH/s on average: half AWS IoT's 100/s per connection
_BURST = const(10)  # PUBLISHes that may go back to back (a boot's statuses, a backlog)
_DRAIN = const(4)  # inbound packets handled per step before looking at the outbox again
_ETIMEDOUT = const(110)
_PUBACK = const(0x40)
_ANSWER_KINDS = (0x33, 0x34)  # "[3" CALLRESULT, "[4" CALLERROR
_EPROTO = const(71)


def check_client_id(client_id):
    """MQTT client id = charge point id = AWS thing name."""
    if not isinstance(client_id, str) or not client_id:
        raise ValueError("client id must be a non-empty string")
    if len(client_id.encode()) > _MAX_CLIENT_ID:
        raise ValueError("client id longer than 128 bytes")
    for c in "/+#":
        if c in client_id:
            raise ValueError("client id must not contain '%s'" % c)


def make_topic(template, client_id):
    """'{id}/in' -> b'CP001/in', checked against AWS IoT's topic limits."""
    if not isinstance(template, str):
        raise ValueError("topic template must be a string")
    topic = template.replace("{id}", client_id)
    raw = topic.encode()
    if not raw or len(raw) > _MAX_TOPIC:
        raise ValueError("topic %r: must be 1..256 bytes" % topic)
    if topic.count("/") > _MAX_SLASHES:
        raise ValueError("topic %r: more than 7 slashes" % topic)
    if "+" in topic or "#" in topic or "{" in topic or topic[0] == "$":
        raise ValueError("topic %r: no wildcards, placeholders or $ topics" % topic)
    return raw


class _Refused(Exception):
    # Raised from umqtt's message callback: umqtt then skips that PUBLISH's PUBACK, and the
    # packet stream stays intact (the whole packet has been read).
    pass


def _umqtt_client(client_id, server, port, keepalive, ssl):
    from umqtt.simple import MQTTClient

    return MQTTClient(client_id, server, port=port, keepalive=keepalive, ssl=ssl)


def _error_text(e):
    name = type(e).__name__
    if isinstance(e, OSError):
        name = "OSError"  # same text on CPython (ConnectionResetError, ...) and MicroPython
        if e.args and e.args[0] == _ETIMEDOUT:
            return "OSError: timed out"
    if not e.args:
        return name
    # mbedTLS messages come wrapped in newlines; the status display wants one line.
    return "%s: %s" % (name, " ".join(str(e).split()))


class MqttTransport(NetThread):
    """See the module docstring. `client_factory(client_id, server, port, keepalive, ssl)`
    returns an object with umqtt.simple's API; `ssl` is a `TlsLink` (or None)."""
    replays = True  # the persistent session delivers what came while we were away

    def __init__(self, client_id, server, port=8883, ssl=None, keepalive=300,
                 topic_in="{id}/in", topic_out="{id}/out", ticks_ms=None,
                 client_factory=None, rand=None, outbox_len=8, outbox_bytes=4096, inbox_len=24,
                 inbox_bytes=4096,
                 io_timeout_ms=10000, stale_ms=2000, backoff_first_ms=1000,
                 backoff_cap_ms=120000, stable_ms=30000, pong_ms=None, stack_size=None,
                 before_connect=None, say=print, wake=None, provisioning=None,
                 identity="config", serial=None):
        check_client_id(client_id)
        # AWS IoT fleet provisioning: () -> a chargepoint.transport.claim.Claim. With identity
        # "claim" it goes through first, on the link of the claim certificate, before any
        # OCPP; renew() has it run beside the frames on the charger's own link.
        self._provisioning = provisioning
        self.claim = provisioning() if identity == "claim" else None
        self._renewing = False  # renew() asked; the network thread takes it up
        # called in the network thread before each CONNECT: the place for blocking set-up
        # such as NTP (mbedTLS checks certificate dates against the RTC)
        self.before_connect = before_connect
        self._say = say  # a line for the console (app.py's also goes to the event log)
        self._wake = wake  # called in the network thread when a frame is in the inbox
        self.client_id = client_id
        self.server = server
        self.port = port
        self.keepalive = keepalive
        self.topic_in = make_topic(topic_in, client_id)
        self.topic_out = make_topic(topic_out, client_id)
        self._ticks = ticks_ms or Clock().ticks_ms
        self._factory = client_factory or _umqtt_client
        # the link bounds every read, even without TLS: ssl None is plain TCP
        self._link = ssl if isinstance(ssl, TlsLink) else TlsLink(ssl, io_timeout_ms)
        self.reconnect = Reconnect(self._ticks, backoff_first_ms, backoff_cap_ms, stable_ms, rand)
        self.keepalive_policy = KeepAlive(keepalive, pong_ms)
        self.stale = StaleWindow(stale_ms)
        self.outbox = Mailbox(outbox_len, outbox_bytes)
        self.inbox = Inbox(inbox_len, inbox_bytes)
        self._link.inbox = self.inbox  # payloads are read straight into it
        self._refusing = False  # PUBLISHes are being refused until a reconnect
        self._fresh = False  # the next session's backlog is seconds old, not stale
        self._stack_size = stack_size
        self._client = None
        self._rx_seen = 0
        self._due = None  # ticks the pacing's schedule has reached (GCRA); None: idle
        self._brisk_until = 0  # (NetThread)
        self._tried = None  # the frame whose PUBLISH the link broke off, if any
        self._running = False
        self._thread_alive = False
        self.connected = False
        self.status = {"state": "idle", "connects": 0, "failures": 0, "last_error": None,
                       "published": 0, "received": 0, "dropped": 0, "refused": 0,
                       "oversize": 0, "fallback": None,
                       # the certificate the link presents: "config" (config.json's), "own"
                       # (made on the charger), "claim" (fleet provisioning's); its serial
                       "identity": identity, "certificate_serial": serial}

    # -- engine side (asyncio thread): never blocks beyond a lock held for a list op --------

    def send(self, text):
        frame = text.encode() if isinstance(text, str) else bytes(text)
        if not self.connected and (len(frame) < 2 or frame[1] not in _ANSWER_KINDS):
            # Our own CALL stays in its queue while the link is down. An answer is owed:
            # the CALL it answers was acknowledged, so the outbox keeps it for the
            # persistent session and it goes out after the reconnect.
            return False
        if len(frame) > MAX_PAYLOAD:
            raise ValueError("frame of %d bytes exceeds the 128 KB MQTT payload limit" % len(frame))
        return self.put(frame)

    # -- network thread -----------------------------------------------------------------

    def step(self):
        """One turn of the network loop; returns how long to sleep (ms) before the next."""
        if self._client is None:
            wait = self.reconnect.wait_ms(self._ticks())
            if wait:
                return min(wait, _SLICE_MS)
            self._connect()
            return 0
        try:
            return self._service()
        except Exception as e:  # OSError, MQTTException, or umqtt tripping over a short read
            self._lost(e)
            return 0

    def _socket(self):
        client = self._client
        if client is None or self._refusing:  # refusing: the broker keeps what comes
            return None
        return client.sock

    def close(self):
        """Disconnect politely (the persistent session stays on the broker)."""
        client, self._client = self._client, None
        self.connected = False
        if client is not None:
            try:
                client.disconnect()
            except Exception:  # the link may already be gone
                self._close_socket(client)

    def _connect(self):
        if self.before_connect is not None:
            self.before_connect()
        now = self._ticks()
        self.reconnect.attempted(now)
        self.status["state"] = "connecting"
        client = None
        try:
            client = self._factory(self.client_id, self.server, self.port, self.keepalive,
                                   self._link)
            client.set_callback(self._on_message)
            claiming = self.status["identity"] == "claim"
            if claiming:  # no session to keep: the claim identity is shared
                client.connect(clean_session=True)
            else:
                present = client.connect(clean_session=False)
                if not present:
                    client.subscribe(self.topic_out, 1)
            if self.claim is not None:
                self.claim.link(client)
        except Exception as e:
            self._close_socket(client)
            self._failed(e)
            return
        now = self._ticks()
        if not claiming:
            self.stale.connected(bool(present) and not self._fresh, now)
            self._fresh = self._refusing = False
        self.keepalive_policy.start(now)
        self.reconnect.connected(now)
        self._rx_seen = self._link.rx
        self._client = client
        if claiming:  # the engine's link stays down: no OCPP on the claim
            self.status["state"] = "provisioning"
            return
        self.connected = True
        self.status["state"] = "connected"
        self.status["connects"] += 1

    def _service(self):
        client = self._client
        ka = self.keepalive_policy
        now = self._ticks()
        if ka.dead(now):
            raise OSError(_ETIMEDOUT, "no PINGRESP")
        if ka.ping_due(now):
            client.ping()
            ka.pinged(now)
        if self._renewing and self.claim is None:
            self.claim = self._provisioning()
            self.claim.link(client)
        if self.claim is not None:  # (chargepoint.transport.claim)
            wait = self.claim.turn(self, client)
            if wait is not None:  # on the claim link; or through, the link closed
                return wait
            now = self._ticks()
        frame = self.outbox.peek()
        paced = 0  # ms until the next PUBLISH is allowed
        if frame is not None:
            due = self._due  # GCRA: a PUBLISH per _PUBLISH_GAP_MS, _BURST ahead at most
            if due is None or ticks_diff(now, due) > 0 or \
                    ticks_diff(due, now) > _BURST * _PUBLISH_GAP_MS:  # (ticks wrapped)
                due = now
            # Our own CALLs may go _BURST back to back (a boot's statuses, a backlog after an
            # outage); answers keep to the schedule: a flood of inbound CALLs is then answered
            # no faster than before, which is what keeps the heap its answers take bounded
            # (measured: with bursts of answers too, a flood of GetConfiguration filled it)
            slack = (_BURST - 1) * _PUBLISH_GAP_MS if frame[1] == 0x32 else 0  # b"[2"
            paced = max(0, ticks_diff(due, now) - slack)
            if not paced:
                self._due = ticks_add(due, _PUBLISH_GAP_MS)
                if frame is not self._tried:  # sent again: the first may have been answered
                    self.stale.published(frame)
                self._tried = frame
                self._publish(client, frame)  # returns after its PUBACK
                self._tried = None
                self.outbox.get()
                self.status["published"] += 1
                ka.sent(self._ticks())
        if self._refusing:
            self._note_rx()
            if not len(self.inbox):  # room for the refused frames: have them sent again
                self._redeliver()
                return 0
            return paced if len(self.outbox) else _POLL_MS
        handled = 0
        while handled < _DRAIN and not self.inbox.full():
            try:
                if client.check_msg() is None:
                    break
            except _Refused:
                break
            handled += 1
        self._note_rx()
        client.sock.flush()  # a PUBACK gathered by check_msg
        if handled:
            return 0
        if len(self.outbox):
            return paced
        return _POLL_MS

    def renew(self):
        """(asyncio side) Have the certificate renewed through fleet provisioning on this
        link: a new key, CreateCertificateFromCsr and RegisterThing beside the frames, then
        a reconnection with it. False when this link cannot (no provisioning template)."""
        if self._provisioning is None:
            return False
        self._renewing = True
        return True

    def _note_rx(self):
        link = self._link
        if link.rx != self._rx_seen:
            self._rx_seen = link.rx
            self.keepalive_policy.received(self._ticks())

    def _on_message(self, topic, msg):
        # Runs in the network thread, inside umqtt's check_msg/publish.
        if isinstance(msg, Oversize) and msg.size <= MAX_FRAME:
            self._refuse()  # the inbox had no room for it (the link read it through): sent again
        if self.claim is not None and bytes(topic[:5]) == b"$aws/":
            self.claim.on_message(topic, msg)
            return
        if bytes(topic) != self.topic_out:
            self.status["dropped"] += 1
            return
        if isinstance(msg, Oversize):  # read through the link's buffer: only its head is here
            self.status["oversize"] += 1
            text = msg.text()
            if text is None or peek(text)[2] is None:  # not a CALL: nobody waits for an answer
                self.status["dropped"] += 1
                return
            self._take(text.encode(), self.stale.is_stale(self._ticks(), text), msg.size)
            return
        # msg is the room the inbox gave it (the link read it there), or bytes (a short one)
        if not utf8(msg):
            self.status["dropped"] += 1
            return
        self._take(msg, self.stale.is_stale(self._ticks(), msg))

    def _take(self, data, stale, size=0):
        if self._refusing or not self.inbox.put(data, stale, size):
            self._refuse()
        self.status["received"] += 1
        self.arrived()

    def _refuse(self):
        self._refusing = True
        self.status["refused"] += 1
        raise _Refused()

    def _publish(self, client, frame, topic=None):
        try:
            client.publish(topic or self.topic_in, frame, False, 1)
            return
        except _Refused:  # a PUBLISH came in during the PUBACK wait and was refused
            pass
        # umqtt left its PUBACK wait: go on waiting, reading the PUBACK as umqtt does
        pid = client.pid
        while True:
            try:
                op = client.wait_msg()
            except _Refused:
                continue
            if op == _PUBACK:
                sock = client.sock
                if sock.read(1) != b"\x02":
                    raise OSError(_EPROTO, "bad PUBACK")
                got = sock.read(2)
                if got[0] << 8 | got[1] == pid:
                    return

    def _redeliver(self):
        self._say("mqtt: reconnecting to have the frames refused while the inbox was full again")
        self.close()  # DISCONNECT: the session and its unacknowledged messages stay
        self._fresh = True
        self.status["state"] = "backoff"

    def _lost(self, e):
        client, self._client = self._client, None
        self.connected = False
        self._close_socket(client)
        self._failed(e)

    def _failed(self, e):
        self.status["failures"] += 1
        self.status["last_error"] = _error_text(e)
        self.status["state"] = "backoff"
        # the TLS link gave up the charger's own certificate for config.json's (tls.TlsLink)
        self.status["fallback"] = self._link.fell_back
        self._say("mqtt: link down: %s" % self.status["last_error"])  # the one line it says
        self.reconnect.failed(self._ticks())

    @staticmethod
    def _close_socket(client):
        sock = getattr(client, "sock", None)
        if sock is not None:
            try:
                sock.close()
            except Exception:  # already closed or never opened
                pass
