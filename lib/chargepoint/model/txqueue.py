"""Persistent, ordered queue of transaction-related messages (Start/Stop/MeterValues).

On the flash, segments: logs of records (chargepoint.platform.store: append, scan) named
"q.<number of their first message>", each closed at _SEGMENT bytes, so that one LittleFS block
holds about ten messages (a file over 128 bytes takes a 4 KB block of its own: a file per
message held a block per message, about 220 messages on the 960 KB filesystem of a 4 MB
board with OTA partitions); and "qf": the number of the last message answered (or given up),
the failed attempts at the one after it and the latest time the messages answered carried
(unix seconds: a boot whose clock is unknown stamps nothing earlier, see newest()). A push
appends to the last segment; an answer writes "qf"; a segment whose messages are all
answered is removed. Only the front message is held in RAM, and a few integers.

The bound: at most `MAX` (1000) messages. A full queue (or a full flash) makes room by
dropping the MeterValues of its oldest segment that has any (not the front message): about
ten at a time, the oldest first; a MeterValues that still finds none is dropped, and a
Start- or StopTransaction is never dropped. A transaction starts only while there is room
for its StartTransaction and its StopTransaction (room()): 1000 queued messages of
transactions alone, 500 transactions, stop new sessions, never their records. On a full
flash a Start- or StopTransaction waits in the RAM, and everything after it (lost only if
the power goes before there is room on the flash again, which every message sent makes),
and no session starts until it is on the flash.

A StartTransaction queued offline gets its transactionId from the Central System later:
messages behind it carry the local transaction reference and take the real id from the
"txids" record when they are sent.

Retries (OCPP 1.6 §4.10, transaction-related messages): a CALLERROR or a malformed answer
counts as a failed attempt, retried after TransactionMessageRetryInterval × attempts and
dropped after TransactionMessageAttempts. A missing answer (timeout, offline) is not an
attempt: the message waits, so an outage of any length loses nothing.
"""
from micropython import const

from chargepoint.ocpp.engine import Call

MAX = const(1000)  # messages; beyond this, the oldest MeterValues make room
_SEGMENT = const(3600)  # bytes of messages in a segment: one 4 KB block, with room to spare
_WAIT_MAX_MS = const(300000)
_FRONT = "qf"


def _name(first):
    return "q.%08d" % first


class TxQueue:
    def __init__(self, store, clock, config, on_answer):
        """`on_answer(action, record, payload)` after each answer (payload None when the
        message was given up)."""
        self.store = store
        self.clock = clock
        self.config = config
        self.on_answer = on_answer
        self.txids = store.read("txids", {})  # local ref -> transactionId (or 0: lost)
        front = store.read(_FRONT, {})
        self.done = front.get("s", 0)  # the number of the last message answered or given up
        self._attempts = front.get("n", 0)  # failed attempts at the one after it
        t = front.get("t")
        self._sent_t = t if isinstance(t, int) else None  # latest time of those answered
        self.dropped = 0
        self.count = 0  # messages queued
        self.meters = 0  # of them MeterValues
        self.tail = self.done  # the number of the last message queued
        self.segs = []  # the first numbers of the segments, oldest first
        for name in store.names("q."):
            first = int(name[2:])
            live = False
            for r, _ in self._scan(first, 0, True):
                if r["s"] > self.done:
                    live = True
                    self._counted(r, 1)
                if r["s"] > self.tail:
                    self.tail = r["s"]
            if live:
                self.segs.append(first)
            else:  # every message answered: its removal was cut short
                store.remove(name)
        self._last = store.size(_name(self.segs[-1])) if self.segs else 0
        self._front = None  # (record, first of its segment or None: held, offset after it)
        self._resume = None  # (first of the front segment, offset of the next message in it)
        self._held = []  # records the full flash did not take, in order
        self._not_before = None  # ticks
        self._timeouts = 0

    def __len__(self):
        return self.count

    def _counted(self, r, n):
        self.count += n
        if r["a"] == "MeterValues":
            self.meters += n

    def _scan(self, first, offset=0, report=False):
        """The usable messages of segment `first` from `offset`: (record, offset after it)."""
        name = _name(first)
        for r, end in self.store.scan(name, offset, report):
            if not _usable(r):
                if report:
                    self.store.report(name, "not a queued message")
                continue
            if "s" not in r:  # of the firmware before segments: a file for each message
                r["s"] = first
            yield r, end

    def push(self, uid, action, payload, ref):
        self.tail += 1
        r = {"s": self.tail, "u": uid, "a": action, "p": payload, "r": ref}
        if self.count >= MAX and not self._shed() and action == "MeterValues":
            self.dropped += 1
            return
        self._counted(r, 1)
        if not self._held:
            while not self._append(r):  # the flash is full
                if not self._shed():  # MeterValues made room: again
                    break
            else:
                return
        if action == "MeterValues":
            self._counted(r, -1)
            self.dropped += 1
            return
        self._held.append(r)  # a Start or Stop (and what comes after it): in the RAM

    def _append(self, r):
        store = self.store
        new = not self.segs or self._last >= _SEGMENT
        name = _name(r["s"] if new else self.segs[-1])
        if not store.append(name, r):
            if new:
                store.remove(name)
            return False
        if new:
            self.segs.append(r["s"])
        self._last = store.size(name)
        return True

    def room(self):
        """Whether a transaction may start: room for its StartTransaction and its
        StopTransaction, on top of what is queued, if need be by shedding MeterValues; none
        while the flash is too full to take them (a message waits in the RAM)."""
        return not self._held and (self.count + 2 <= MAX or self.meters > 1)

    def records(self):
        """(number, record) of every message queued, oldest first."""
        for first in list(self.segs):
            for r, _ in self._scan(first):
                if r["s"] > self.done:
                    yield r["s"], r
        for r in self._held:
            yield r["s"], r

    def has(self, action, ref):
        for _, r in self.records():
            if r["a"] == action and r["r"] == ref:
                return True
        return False

    def newest(self):
        """Unix seconds of the latest time in the last queued message (Clock.seconds), or in
        the messages already answered; None without one: a boot whose clock is unknown stamps
        nothing earlier (the wall time kept every minute may be behind a message answered just
        before a power cut)."""
        last = self._held[-1] if self._held else None
        if last is None and self.segs:
            for last, _ in self._scan(self.segs[-1]):
                pass
        return _later(self._stamped(last) if last is not None else None, self._sent_t)

    def _stamped(self, r):
        """Unix seconds of the latest time in the message `r`, None if it has none known."""
        p = r["p"]
        stamps = [p.get("timestamp", "")]
        for key in ("meterValue", "transactionData"):
            for mv in p.get(key, ()):
                stamps.append(mv["timestamp"])
        newest = None
        for stamp in stamps:
            t = self.clock.seconds(stamp)
            if t is not None and (newest is None or t > newest):
                newest = t
        return newest

    def _shed(self):
        """Drop the MeterValues of the oldest segment that has any but the front message;
        False if there is none. The segment is written again without them (or removed); on a
        flash too full for that, the oldest segment of MeterValues only is removed."""
        if not self.meters:
            return False  # (no segment to read through: a queue of Starts and Stops)
        front = self._peek()
        keep_s = front[0]["s"] if front is not None else None
        for first in self.segs:
            keep = []
            gone = 0
            for r, _ in self._scan(first):
                if r["s"] <= self.done:
                    continue
                if r["a"] == "MeterValues" and r["s"] != keep_s:
                    gone += 1
                else:
                    keep.append(r)
            if not gone:
                continue
            name = _name(first)
            if keep:
                if not self.store.rewrite(name, keep):
                    continue  # no room for that: a segment of MeterValues only goes whole
            else:
                self.store.remove(name)
                self.segs.remove(first)
            self.count -= gone
            self.meters -= gone
            self.dropped += gone
            self._front = self._resume = None  # (offsets in that segment have moved)
            self._last = self.store.size(_name(self.segs[-1])) if self.segs else 0
            return True
        return False

    def _peek(self):
        """(record, first of its segment or None: held in the RAM, offset after it) of the
        next message to send, or None."""
        if self._front is not None:
            return self._front
        while self.segs:
            first = self.segs[0]
            resume = self._resume
            for r, end in self._scan(first, resume[1] if resume and resume[0] == first else 0):
                if r["s"] > self.done:
                    self._front = (r, first, end)
                    return self._front
            self.store.remove(_name(first))  # every message of it answered
            self.segs.pop(0)
            if not self.segs:
                self._last = 0
        self._flush()
        if self._held:
            self._front = (self._held[0], None, 0)
        return self._front

    def _flush(self):
        # room on the flash again: the messages the RAM holds go to it, in order
        while self._held and self._append(self._held[0]):
            self._held.pop(0)

    def _pop(self, r):
        """The front message answered or given up."""
        front = self._front
        self.done = r["s"]
        self._attempts = 0
        self._sent_t = _later(self._stamped(r), self._sent_t)
        self.store.write(_FRONT, {"s": self.done, "n": 0, "t": self._sent_t})
        self._counted(r, -1)
        self._front = None
        if front[1] is None:
            self._held.pop(0)
        else:
            self._resume = (front[1], front[2])
        self._flush()

    def front_action(self):
        front = self._peek()
        return front[0]["a"] if front is not None else None

    def next_call(self):
        """The front message as a Call, or None (empty, waiting to retry, or blocked)."""
        if self._not_before is not None and self.clock.since(self._not_before) < 0:
            return None
        while True:
            front = self._peek()
            if front is None:
                return None
            r = front[0]
            payload = r["p"]
            if r["a"] == "StartTransaction":
                if r["r"] in self.txids:  # answered before a power cut took the pop
                    self._pop(r)
                    continue
            elif r["r"] is not None:
                txid = self.txids.get(r["r"])
                if txid is None or txid == 0:  # its StartTransaction was given up on
                    self._pop(r)
                    self.dropped += 1
                    continue
                payload["transactionId"] = txid
            resolve_stamps(self.clock, payload)
            return Call(r["u"], r["a"], payload, self._done(r["s"]), self._fail(r["s"]))

    def _current(self, seq):
        front = self._peek()
        return front[0] if front is not None and front[0]["s"] == seq else None

    def _done(self, seq):
        def done(payload):
            r = self._current(seq)
            if r is None:
                return
            if r["a"] == "StartTransaction":
                self.txids[r["r"]] = payload["transactionId"]
                self.store.write("txids", self.txids)
            elif r["a"] == "StopTransaction" and r["r"] in self.txids:
                del self.txids[r["r"]]
                self.store.write("txids", self.txids)
            self._pop(r)
            self._not_before = None
            self._timeouts = 0
            self.on_answer(r["a"], r, payload)
        return done

    def _fail(self, seq):
        def fail(code, description):
            r = self._current(seq)
            if r is None:
                return
            interval = self.config.get("TransactionMessageRetryInterval") * 1000
            if code in ("Timeout", "Offline"):
                self._timeouts += 1
                wait = min(interval * self._timeouts, _WAIT_MAX_MS) if code == "Timeout" else 0
            else:
                self._attempts += 1
                if self._attempts >= self.config.get("TransactionMessageAttempts"):
                    if r["a"] == "StartTransaction":
                        self.txids[r["r"]] = 0  # the messages behind it can never be sent
                        self.store.write("txids", self.txids)
                    self._pop(r)
                    self.dropped += 1
                    self.on_answer(r["a"], r, None)
                    return
                self.store.write(_FRONT, {"s": self.done, "n": self._attempts,
                                          "t": self._sent_t})
                wait = interval * self._attempts
            self._not_before = self.clock.after(wait) if wait else None
        return fail


_ACTIONS = ("StartTransaction", "StopTransaction", "MeterValues")


def _later(a, b):
    """The later of two unix times, either of them None when unknown."""
    return a if b is None or (a is not None and a > b) else b


def _usable(r):
    """A queue record this firmware can send (a record of another firmware may not be)."""
    try:
        return (r["a"] in _ACTIONS and isinstance(r["u"], str) and isinstance(r["p"], dict)
                and isinstance(r.get("s", 0), int) and (r["r"] is None or isinstance(r["r"], str))
                and isinstance(r["p"].get("timestamp", ""), str)
                and all(isinstance(mv, dict) and isinstance(mv.get("timestamp"), str)
                        for key in ("meterValue", "transactionData")
                        for mv in r["p"].get(key, ())))
    except (KeyError, TypeError):
        return False


def resolve_stamps(clock, payload):
    if "timestamp" in payload:
        payload["timestamp"] = clock.resolve(payload["timestamp"])
    for key in ("meterValue", "transactionData"):
        for mv in payload.get(key, ()):
            mv["timestamp"] = clock.resolve(mv["timestamp"])
