"""When to reconnect, when to ping, which frames are stale: the MQTT transport's policy.

Pure classes: each takes ticks as arguments or an injected `ticks_ms` clock, so host tests can
step time; none does I/O. `MqttTransport`'s network thread asks them and acts.

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
- Stale rule: which inbound frames are old, i.e. held by the broker while we were away.
  After a CONNACK with session-present=1 the broker first delivers what it kept for us; a
  frame is old when it arrives (a) within `stale_ms` (default 2 s) of that CONNACK and (b)
  before the Central System has answered a CALL we published on this connection. MQTT
  keeps the order of one publisher's messages on a topic, so once an answer to one of our
  CALLs of this connection has come, everything the Central System published before it (the
  backlog) has come too: what follows is fresh, whenever it comes. A new session
  (session-present=0) has no backlog. Old frames are returned with stale=True: the engine
  still answers them (the Central System waits for a reply) but does not act on actuating
  commands (RemoteStart/Stop, UnlockConnector, Reset, ChangeAvailability...), which may be
  an hour old. Duplicates are passed through: AWS may redeliver with a new packet id, so
  de-duplication is the engine's job, by OCPP unique id.
"""
from micropython import const

from chargepoint.ocpp.framing import head_text, peek
from chargepoint.platform.clock import ticks_add, ticks_diff

_MAX_KEEPALIVE = const(1200)
_MIN_CONNECT_GAP_MS = const(1000)  # AWS: one CONNECT per second per client id


def _default_rand(n):
    import random
    return random.getrandbits(24) % n if n > 0 else 0


class Reconnect:
    """When the next CONNECT may go out (see the module docstring)."""

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
        self._until = None  # ticks the window closes at; None: closed
        self._asked = []  # unique ids of our CALLs published on this connection

    def connected(self, session_present, now):
        self._until = ticks_add(now, self.window_ms) if session_present else None
        self._asked = []

    def published(self, frame):
        """A frame of ours goes out on this connection (bytes)."""
        if self._until is None or len(self._asked) >= 4:
            return
        kind, uid, _ = peek(head_text(frame))
        if kind == 2:
            self._asked.append(uid)

    def is_stale(self, now, frame=""):
        """Whether `frame` (bytes-like or text) comes in the window, before any answer to a
        CALL of ours published since (the Central System has heard us then)."""
        if self._until is None:
            return False
        if ticks_diff(self._until, now) <= 0:
            self._until = None
            return False
        kind, uid, _ = peek(head_text(frame))
        if kind is not None and kind != 2 and uid in self._asked:
            self._until = None  # the Central System has heard us: the backlog is behind us
            return False
        return True
