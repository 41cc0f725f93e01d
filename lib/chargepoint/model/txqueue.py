"""Persistent, ordered queue of transaction-related messages (Start/Stop/MeterValues).

One record per message ("q.<seq>"), so a push or a pop is one atomic file operation and only
the front message is held in RAM, besides 4 bytes of sequence number per queued message.
A MeterValues gets an odd sequence number and a Start- or StopTransaction an even one, so
the queue knows what it may shed without reading the flash.

The bound: at most `MAX` (1000) messages. A full queue (or a full flash) makes room by
dropping its oldest MeterValues (not the one in flight); a MeterValues that still finds
none is dropped, and a Start- or StopTransaction is never dropped. A transaction starts only
while there is room for its StartTransaction and its StopTransaction (room()): 1000 queued
messages of transactions alone, 500 transactions, stop new sessions, never their records.
On a full flash a Start- or StopTransaction waits in the RAM (lost only if the power goes
before there is room on the flash for it again, which every message sent makes).

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
_WAIT_MAX_MS = const(300000)


class TxQueue:
    def __init__(self, store, clock, config, on_answer):
        """`on_answer(action, record, payload)` after each answer (payload None when the
        message was given up)."""
        self.store = store
        self.clock = clock
        self.config = config
        self.seqs = [int(n[2:]) for n in store.names("q.")]
        self.seqs.sort()
        self.txids = store.read("txids", {})  # local ref -> transactionId (or 0: lost)
        self._front = None  # (seq, record)
        self._not_before = None  # ticks
        self._timeouts = 0
        self.on_answer = on_answer
        self.dropped = 0
        self._held = {}  # seq -> record the full flash did not take (lost to a power cut only)

    def __len__(self):
        return len(self.seqs)

    def push(self, uid, action, payload, ref):
        seqs = self.seqs
        seq = seqs[-1] + 1 if seqs else 1
        if (seq & 1) != (action == "MeterValues"):
            seq += 1  # odd: a MeterValues (it may be shed); even: a Start or Stop
        if len(seqs) >= MAX and not self._shed() and action == "MeterValues":
            self.dropped += 1
            return
        r = {"u": uid, "a": action, "p": payload, "r": ref, "n": 0}
        while not self.store.write("q.%08d" % seq, r):  # the flash is full
            if self._shed():  # a MeterValues made room: again
                continue
            if action == "MeterValues":
                self.dropped += 1
                return
            self._held[seq] = r  # a Start or Stop: kept in the RAM, written once there is room
            break
        seqs.append(seq)

    def room(self):
        """Whether a transaction may start: room for its StartTransaction and its
        StopTransaction, on top of what is queued, if need be by shedding MeterValues."""
        seqs = self.seqs
        if len(seqs) + 2 <= MAX:
            return True
        for seq in seqs[1:]:
            if seq & 1:
                return True
        return False

    def _read(self, seq):
        r = self._held.get(seq)
        if r is not None:
            return r
        name = "q.%08d" % seq
        r = self.store.read(name)
        if r is None or _usable(r):
            return r
        self.store.discard(name, "not a queued message")
        return None

    def records(self):
        for seq in self.seqs:
            r = self._read(seq)
            if r is not None:
                yield seq, r

    def has(self, action, ref):
        for _, r in self.records():
            if r["a"] == action and r["r"] == ref:
                return True
        return False

    def newest(self):
        """Unix seconds of the latest time in the last queued message (Clock.seconds), None
        without one: a boot whose clock is unknown stamps nothing earlier."""
        seqs = self.seqs
        r = self._read(seqs[-1]) if seqs else None
        if r is None:
            return None
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
        """Drop the oldest MeterValues but the one in flight; False if there is none. The odd
        sequence numbers are MeterValues (one queued by an older firmware is read first)."""
        seqs = self.seqs
        for i in range(1, len(seqs)):
            seq = seqs[i]
            if seq & 1:
                r = self._read(seq)
                if r is None or r["a"] == "MeterValues":
                    self._remove(seq)
                    self.dropped += 1
                    return True
        return False

    def _remove(self, seq):
        self.store.remove("q.%08d" % seq)
        self.seqs.remove(seq)
        if self._front is not None and self._front[0] == seq:
            self._front = None
        if self._held:
            self._held.pop(seq, None)
            for seq in sorted(self._held):  # room again on the flash: to it, in order
                if not self.store.write("q.%08d" % seq, self._held[seq]):
                    break
                del self._held[seq]

    def _peek(self):
        while self.seqs:
            if self._front is None or self._front[0] != self.seqs[0]:
                r = self._read(self.seqs[0])
                if r is None:
                    self.seqs.pop(0)
                    continue
                self._front = (self.seqs[0], r)
            return self._front
        return None

    def front_action(self):
        front = self._peek()
        return front[1]["a"] if front is not None else None

    def next_call(self):
        """The front message as a Call, or None (empty, waiting to retry, or blocked)."""
        if self._not_before is not None and self.clock.since(self._not_before) < 0:
            return None
        while True:
            front = self._peek()
            if front is None:
                return None
            seq, r = front
            payload = r["p"]
            if r["a"] == "StartTransaction":
                if r["r"] in self.txids:  # answered before a power cut took the pop
                    self._remove(seq)
                    continue
            elif r["r"] is not None:
                txid = self.txids.get(r["r"])
                if txid is None or txid == 0:  # its StartTransaction was given up on
                    self._remove(seq)
                    self.dropped += 1
                    continue
                payload["transactionId"] = txid
            resolve_stamps(self.clock, payload)
            return Call(r["u"], r["a"], payload, self._done(seq), self._fail(seq))

    def _done(self, seq):
        def done(payload):
            front = self._peek()
            if front is None or front[0] != seq:
                return
            r = front[1]
            if r["a"] == "StartTransaction":
                self.txids[r["r"]] = payload["transactionId"]
                self.store.write("txids", self.txids)
            elif r["a"] == "StopTransaction" and r["r"] in self.txids:
                del self.txids[r["r"]]
                self.store.write("txids", self.txids)
            self._remove(seq)
            self._not_before = None
            self._timeouts = 0
            self.on_answer(r["a"], r, payload)
        return done

    def _fail(self, seq):
        def fail(code, description):
            front = self._peek()
            if front is None or front[0] != seq:
                return
            r = front[1]
            interval = self.config.get("TransactionMessageRetryInterval") * 1000
            if code in ("Timeout", "Offline"):
                self._timeouts += 1
                wait = min(interval * self._timeouts, _WAIT_MAX_MS) if code == "Timeout" else 0
            else:
                r["n"] += 1
                if r["n"] >= self.config.get("TransactionMessageAttempts"):
                    if r["a"] == "StartTransaction":
                        self.txids[r["r"]] = 0  # the messages behind it can never be sent
                        self.store.write("txids", self.txids)
                    self._remove(seq)
                    self.dropped += 1
                    self.on_answer(r["a"], r, None)
                    return
                if seq not in self._held:
                    self.store.write("q.%08d" % seq, r)
                wait = interval * r["n"]
            self._not_before = self.clock.after(wait) if wait else None
        return fail


_ACTIONS = ("StartTransaction", "StopTransaction", "MeterValues")


def _usable(r):
    """A queue record this firmware can send (a record of another firmware may not be)."""
    try:
        return (r["a"] in _ACTIONS and isinstance(r["u"], str) and isinstance(r["p"], dict)
                and isinstance(r["n"], int) and (r["r"] is None or isinstance(r["r"], str))
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
