"""OCPP-J frames over MQTT (AWS IoT Core): a never-blocking transport around umqtt.simple.

The OCPP engine polls this object from the asyncio loop; every blocking network call (DNS,
TCP connect, TLS handshake, CONNACK/SUBACK/PUBACK waits) happens in one network thread that
owns the `umqtt.simple.MQTTClient`. The two sides meet only in two small bounded mailboxes
guarded by a lock, so an unplug handled on the asyncio side never waits for the network.

Engine-facing interface::

    t = MqttTransport("CP001", "xxxx-ats.iot.eu-west-1.amazonaws.com",
                      ssl=tls_context("ca.pem", "cert.pem", "key.pem"))
    t.start()
    t.connected          # MQTT session is up
    t.send(text)         # queue a frame for <id>/in at QoS 1; False when offline/full
    t.can_send()         # connected and the outbox has room (for the answer to a frame)
    t.receive()          # None or (text, stale) from <id>/out
    t.status             # dict: state, connects, failures, last_error, published, received,
                         # dropped, refused
    t.stop()

Policy (pure classes below, each taking an injected `ticks_ms` clock so host tests can step
time; the thread body only calls `step()` and sleeps):

- Reconnect: exponential backoff with "equal jitter": after the n-th failure in a row the
  delay is drawn from [b/2, b], b = min(cap, 2 * first * 2**n), so the first retry waits at
  least `first_ms` (>= 1 s: AWS allows one CONNECT per second per client id) and a fleet
  does not reconnect in step after a broker outage. Two CONNECTs are never closer than 1 s.
  The series restarts after a connection that stayed up `stable_ms` (a connection that
  drops at once, e.g. two devices fighting over one client id, keeps backing off).
- Keepalive: PINGREQ when nothing was sent for keepalive/2 (well inside AWS's 1.5 x
  keepalive); the link is dead when no byte at all arrives within `pong_ms` of a PINGREQ.
  A PUBACK/CONNACK/SUBACK that does not come within `io_timeout_ms` fails the socket read.
  Either way the session is dropped and the reconnect policy takes over.
- Persistent session: CONNECT with clean_session=False; SUBSCRIBE (QoS 1) to the out topic
  only when CONNACK says session-present=0 (the broker kept the subscription otherwise).
- Stale rule: frames received within `stale_ms` (default 2 s) after a CONNACK with
  session-present=1 are the broker's backlog from while we were offline and are returned
  with stale=True. The engine still answers them (the Central System waits for a reply) but
  does not act on actuating commands (RemoteStart/Stop, UnlockConnector, Reset, ...), which
  may be an hour old. Duplicates are passed through: AWS may redeliver with a new packet id,
  so de-duplication is the engine's job, by OCPP unique id.
- Outbox: at most `outbox_len` frames; a frame leaves the outbox only after its PUBACK, so a
  link lost mid-publish republishes it after reconnecting (at least once). PUBLISHes are
  at least 20 ms apart: never more than 50 a second (AWS IoT allows 100 per connection).
- Inbox: at most `inbox_len` frames (8) and `inbox_bytes` of them (16 KB; one frame of any
  size is taken when the inbox is empty), so inbound frames never hold more than that. While
  it is full the thread stops reading the socket (back-pressure on the broker). A frame that
  arrives while it is full, during a PUBACK wait, is *refused*: the callback raises before
  umqtt sends its PUBACK, so the broker keeps it. From then on every PUBLISH is refused
  (order is kept) until the inbox has drained; then the thread disconnects and reconnects at
  once (only the 1 s CONNECT gap applies) and the persistent session redelivers what was
  refused. That backlog is not marked stale: it is seconds old. A frame that is
  acknowledged is therefore always handed to the engine; status["refused"] counts refusals.
  The engine takes a frame only when the outbox has room for its answer (`can_send()`).
  Frames on another topic or not UTF-8 are acknowledged and dropped (status["dropped"]).

Mechanism: `TlsLink` is handed to umqtt.simple as its `ssl=` object. It sets a timeout on the
TCP socket before the TLS handshake (a server that accepts and then says nothing cannot hang
the thread), keeps that timeout whenever umqtt asks for a blocking socket, and counts inbound
bytes, which is how a PINGRESP (swallowed by umqtt) is noticed. Only the TCP connect itself
is bounded by the OS/lwIP timeout; the asyncio loop does not wait for it, but stop() does.
"""
import _thread
import time

from micropython import const

from chargepoint.clock import Clock, ticks_add, ticks_diff

MAX_PAYLOAD = const(131072)  # AWS IoT: 128 KB per message
_MAX_TOPIC = const(256)
_MAX_SLASHES = const(7)
_MAX_CLIENT_ID = const(128)
_MAX_KEEPALIVE = const(1200)
_MIN_CONNECT_GAP_MS = const(1000)  # AWS: one CONNECT per second per client id
_POLL_MS = const(25)  # idle thread sleep between socket polls
_SLICE_MS = const(200)  # longest sleep while backing off, so stop() is prompt
_PUBLISH_GAP_MS = const(20)  # at most 50 PUBLISH/s: half AWS IoT's 100/s per connection
_DRAIN = const(4)  # inbound packets handled per step before looking at the outbox again
_ETIMEDOUT = const(110)
_PUBACK = const(0x40)
_EPROTO = const(71)

try:
    _sleep_ms = time.sleep_ms
except AttributeError:  # CPython
    def _sleep_ms(ms):
        time.sleep(ms / 1000)


def _default_rand(n):
    import random
    return random.getrandbits(24) % n if n > 0 else 0


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


class Reconnect:
    """When the next CONNECT may go out (see module docstring)."""

    def __init__(self, ticks_ms, first_ms=1000, cap_ms=120000, stable_ms=30000, rand=None):
        if first_ms < _MIN_CONNECT_GAP_MS:
            raise ValueError("first reconnect delay must be >= 1000 ms")
        self._ticks = ticks_ms
        self.first_ms = first_ms
        self.cap_ms = max(cap_ms, first_ms)
        self.stable_ms = stable_ms
        self._rand = rand or _default_rand
        self.failures = 0  # in a row
        self._next = None  # ticks before which no CONNECT may start
        self._last = None  # ticks of the last CONNECT attempt
        self._up = None  # ticks when the current connection came up

    def delay_ms(self):
        base = self.first_ms << min(self.failures + 1, 20)
        if base > self.cap_ms:
            base = self.cap_ms
        half = base // 2
        return half + self._rand(base - half + 1)

    def wait_ms(self, now=None):
        """0 when a CONNECT may start now, else the ms still to wait."""
        if now is None:
            now = self._ticks()
        wait = 0
        if self._next is not None:
            wait = ticks_diff(self._next, now)
        if self._last is not None:
            wait = max(wait, _MIN_CONNECT_GAP_MS - ticks_diff(now, self._last))
        return wait if wait > 0 else 0

    def attempted(self, now):
        self._last = now

    def connected(self, now):
        self._up = now
        self._next = None

    def failed(self, now):
        """A CONNECT failed or a connection was lost; returns the delay chosen."""
        if self._up is not None and ticks_diff(now, self._up) >= self.stable_ms:
            self.failures = 0
        self._up = None
        delay = self.delay_ms()
        self.failures += 1
        self._next = ticks_add(now, delay)
        return delay


class KeepAlive:
    """PINGREQ schedule and dead-link detection for one MQTT session."""

    def __init__(self, keepalive_s, pong_ms=None):
        if not 1 <= keepalive_s <= _MAX_KEEPALIVE:
            raise ValueError("keepalive must be 1..1200 s")
        self.interval_ms = keepalive_s * 500  # half the keepalive: far inside 1.5x
        self.pong_ms = pong_ms if pong_ms is not None else min(30000, keepalive_s * 250)
        self.start(0)

    def start(self, now):
        self._tx = now
        self._rx = now
        self._ping = None  # ticks of the outstanding PINGREQ

    def sent(self, now):
        self._tx = now

    def received(self, now):
        self._rx = now
        self._ping = None

    def ping_due(self, now):
        return self._ping is None and ticks_diff(now, self._tx) >= self.interval_ms

    def pinged(self, now):
        self._ping = now
        self._tx = now

    def dead(self, now):
        return self._ping is not None and ticks_diff(now, self._ping) >= self.pong_ms


class StaleWindow:
    """Flags the backlog a resumed persistent session delivers right after CONNACK."""

    def __init__(self, window_ms=2000):
        self.window_ms = window_ms
        self._until = None

    def connected(self, session_present, now):
        self._until = ticks_add(now, self.window_ms) if session_present else None

    def is_stale(self, now):
        return self._until is not None and ticks_diff(self._until, now) > 0


class Mailbox:
    """Bounded FIFO shared by the asyncio side and the network thread: at most `limit` items
    and, when `max_bytes` is set, at most that many bytes of them (an empty mailbox takes one
    item of any size)."""

    def __init__(self, limit, max_bytes=0):
        if limit < 1:
            raise ValueError("mailbox size must be >= 1")
        self.limit = limit
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items = []  # [(item, size)]
        self._lock = _thread.allocate_lock()

    def __len__(self):
        return len(self._items)

    def full(self):
        return len(self._items) >= self.limit or (self.max_bytes and self.bytes >= self.max_bytes)

    def put(self, item, size=0):
        with self._lock:
            n = len(self._items)
            if n >= self.limit or (n and self.max_bytes and self.bytes + size > self.max_bytes):
                return False
            self._items.append((item, size))
            self.bytes += size
            return True

    def peek(self):
        with self._lock:
            return self._items[0][0] if self._items else None

    def get(self):
        with self._lock:
            if not self._items:
                return None
            item, size = self._items.pop(0)
            self.bytes -= size
            return item


class _Refused(Exception):
    # Raised from umqtt's message callback: umqtt then skips that PUBLISH's PUBACK, and the
    # packet stream stays intact (the whole packet has been read).
    pass


class TlsLink:
    """umqtt.simple's `ssl=` object: TLS with SNI, bounded reads, inbound byte counting."""

    def __init__(self, context, timeout_ms=10000):
        self.context = context
        self.timeout_s = timeout_ms / 1000
        self.rx = 0  # inbound reads that returned data; only the network thread touches it

    def wrap_socket(self, sock, server_hostname=None):
        sock.settimeout(self.timeout_s)  # bounds the handshake too
        tls = self.context.wrap_socket(sock, server_hostname=server_hostname)
        return _TimedSocket(self, sock, tls)


class _TimedSocket:
    # umqtt toggles setblocking(False/True) around check_msg; on ESP32 and unix that would
    # drop the timeout, so "blocking" here always means "blocking for at most timeout_s".

    def __init__(self, link, raw, tls):
        self._link = link
        self._raw = raw
        self._tls = tls
        self._blocking = True

    def read(self, n):
        data = self._tls.read(n)
        if data:
            self._link.rx += 1
        elif data is None and self._blocking:
            raise OSError(_ETIMEDOUT)
        return data

    def write(self, *args):
        return self._tls.write(*args)

    def setblocking(self, flag):
        self._blocking = flag
        self._raw.settimeout(self._link.timeout_s if flag else 0)

    def close(self):
        self._tls.close()


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def pem_blocks(data):
    """Every PEM block of `data` as DER, in order; DER input is returned as the one block."""
    if b"-----BEGIN" not in data:
        return [data]
    import binascii

    blocks = []
    begin = data.find(b"-----BEGIN")
    while begin >= 0:
        start = data.index(b"\n", begin) + 1
        end = data.index(b"-----END", start)
        blocks.append(binascii.a2b_base64(data[start:end]))
        begin = data.find(b"-----BEGIN", end + 8)
    return blocks


def tls_context(cafile, certfile, keyfile):
    """Mutual TLS as AWS IoT wants it: server checked against `cafile`, our cert presented.

    Files may be PEM or DER; `cafile` may be a bundle of several CA certificates (AWS's RSA
    and ECC roots, say). mbedTLS builds without PEM parsing (the unix port's, measured) reject
    PEM with "invalid cert"; then each PEM block is converted to DER and loaded on its own
    (every load adds to the trusted chain).
    """
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ca = _read(cafile)
    try:
        ctx.load_verify_locations(cadata=ca)
    except ValueError:
        for der in pem_blocks(ca):
            ctx.load_verify_locations(cadata=der)
    del ca
    cert, key = _read(certfile), _read(keyfile)
    try:
        ctx.load_cert_chain(cert, key)
    except ValueError:
        ctx.load_cert_chain(pem_blocks(cert)[0], pem_blocks(key)[0])
    return ctx


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


class MqttTransport:
    """See the module docstring. `client_factory(client_id, server, port, keepalive, ssl)`
    returns an object with umqtt.simple's API; `ssl` is a `TlsLink` (or None)."""

    def __init__(self, client_id, server, port=8883, ssl=None, keepalive=300,
                 topic_in="{id}/in", topic_out="{id}/out", ticks_ms=None,
                 client_factory=None, rand=None, outbox_len=8, inbox_len=8, inbox_bytes=16384,
                 io_timeout_ms=10000, stale_ms=2000, backoff_first_ms=1000,
                 backoff_cap_ms=120000, stable_ms=30000, pong_ms=None, stack_size=None):
        check_client_id(client_id)
        self.client_id = client_id
        self.server = server
        self.port = port
        self.keepalive = keepalive
        self.topic_in = make_topic(topic_in, client_id)
        self.topic_out = make_topic(topic_out, client_id)
        self._ticks = ticks_ms or Clock().ticks_ms
        self._factory = client_factory or _umqtt_client
        self._link = None if ssl is None else (ssl if isinstance(ssl, TlsLink)
                                               else TlsLink(ssl, io_timeout_ms))
        self.reconnect = Reconnect(self._ticks, backoff_first_ms, backoff_cap_ms, stable_ms, rand)
        self.keepalive_policy = KeepAlive(keepalive, pong_ms)
        self.stale = StaleWindow(stale_ms)
        self.outbox = Mailbox(outbox_len)
        self.inbox = Mailbox(inbox_len, inbox_bytes)
        self._refusing = False  # PUBLISHes are being refused until a reconnect
        self._fresh = False  # the next session's backlog is seconds old, not stale
        self._stack_size = stack_size
        self._client = None
        self._rx_seen = 0
        self._published_at = None  # ticks of the last PUBLISH sent
        self._running = False
        self._thread_alive = False
        self.connected = False
        self.status = {"state": "idle", "connects": 0, "failures": 0, "last_error": None,
                       "published": 0, "received": 0, "dropped": 0, "refused": 0}

    # -- engine side (asyncio thread): never blocks beyond a lock held for a list op --------

    def send(self, text):
        if not self.connected:
            return False
        frame = text.encode() if isinstance(text, str) else bytes(text)
        if len(frame) > MAX_PAYLOAD:
            raise ValueError("frame of %d bytes exceeds the 128 KB MQTT payload limit" % len(frame))
        return self.outbox.put(frame)

    def can_send(self):
        """Whether a frame sent now would be taken: the engine reads an inbound frame only
        then, so its answer is never refused."""
        return self.connected and not self.outbox.full()

    def receive(self):
        return self.inbox.get()

    def start(self):
        if self._running or self._thread_alive:
            self._running = True
            return
        self._running = True
        self._thread_alive = True
        old = None
        if self._stack_size:
            old = _thread.stack_size(self._stack_size)
        try:
            _thread.start_new_thread(self._run, ())
        finally:
            if old is not None:
                _thread.stack_size(old)

    def stop(self):
        """Ask the thread to disconnect and end; returns at once (see `stopped`)."""
        self._running = False

    @property
    def stopped(self):
        return not self._thread_alive

    # -- network thread -----------------------------------------------------------------

    def _run(self):
        try:
            while self._running:
                wait = self.step()
                if wait:
                    _sleep_ms(wait)
        finally:
            self.close()
            self.status["state"] = "stopped"
            self._thread_alive = False

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
        now = self._ticks()
        self.reconnect.attempted(now)
        self.status["state"] = "connecting"
        client = None
        try:
            client = self._factory(self.client_id, self.server, self.port, self.keepalive,
                                   self._link)
            client.set_callback(self._on_message)
            present = client.connect(clean_session=False)
            if not present:
                client.subscribe(self.topic_out, 1)
        except Exception as e:
            self._close_socket(client)
            self._failed(e)
            return
        now = self._ticks()
        self.stale.connected(bool(present) and not self._fresh, now)
        self._fresh = self._refusing = False
        self.keepalive_policy.start(now)
        self.reconnect.connected(now)
        self._rx_seen = self._link.rx if self._link is not None else 0
        self._client = client
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
        frame = self.outbox.peek()
        paced = 0  # ms until the next PUBLISH is allowed
        if frame is not None:
            last = self._published_at
            if last is not None:
                paced = max(0, _PUBLISH_GAP_MS - ticks_diff(now, last))
            if not paced:
                self._published_at = now
                self._publish(client, frame)  # returns after its PUBACK
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
        if handled:
            return 0
        if len(self.outbox):
            return paced
        return _POLL_MS

    def _note_rx(self):
        link = self._link
        if link is not None and link.rx != self._rx_seen:
            self._rx_seen = link.rx
            self.keepalive_policy.received(self._ticks())

    def _on_message(self, topic, msg):
        # Runs in the network thread, inside umqtt's check_msg/publish.
        if bytes(topic) != self.topic_out:
            self.status["dropped"] += 1
            return
        try:
            text = bytes(msg).decode()
        except UnicodeError:
            self.status["dropped"] += 1
            return
        if self._refusing or not self.inbox.put((text, self.stale.is_stale(self._ticks())),
                                                len(msg)):
            self._refusing = True
            self.status["refused"] += 1
            raise _Refused()
        self.status["received"] += 1

    def _publish(self, client, frame):
        try:
            client.publish(self.topic_in, frame, False, 1)
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
        print("mqtt: reconnecting to have the frames refused while the inbox was full again")
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
        print("mqtt: link down:", self.status["last_error"])  # the serial log's one line
        self.reconnect.failed(self._ticks())

    @staticmethod
    def _close_socket(client):
        sock = getattr(client, "sock", None)
        if sock is not None:
            try:
                sock.close()
            except Exception:  # already closed or never opened
                pass
