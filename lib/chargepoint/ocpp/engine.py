"""OCPP-J RPC engine: framing, one CALL in flight, timeouts, routing, validation, de-duplication.

Pure protocol: it is handed a transport (`send(text)`, `can_send()`, `connected`), a clock
and a source of outgoing calls, and is fed inbound frames (bytes-like or text). No I/O of its
own.
"""
import json

from micropython import const

from chargepoint.ocpp import schema
from chargepoint.ocpp.errors import CallError
from chargepoint.ocpp.framing import MAX_FRAME, SHOWN, head_text, peek

_CALL = const(2)
_RESULT = const(3)
_ERROR = const(4)
_RECENT_BYTES = const(1024)  # the answers to the latest inbound CALLs, for redeliveries
_RECENT_TEXT = const(512)  # answers up to this long are kept to be sent again as they were
_MAX_DEPTH = const(16)  # arrays and objects in arrays and objects: deeper is refused unparsed
_MAX_CONTAINERS = const(128)  # arrays and objects in one frame: more are refused unparsed


class Call:
    """One outgoing request. `done(payload)` on CALLRESULT; `fail(code, description)` on
    CALLERROR, on an answer that breaks the OCPP rules, or with code "Timeout"."""

    def __init__(self, uid, action, payload, done=None, fail=None, timeout_ms=0):
        self.uid = uid
        self.action = action
        self.payload = payload
        self.done = done
        self.fail = fail
        self.timeout_ms = timeout_ms


def frame_call(call):
    return json.dumps([_CALL, call.uid, call.action, call.payload])


def frame_error(uid, code, description, details=None):
    return json.dumps([_ERROR, uid, code, description, details or {}])


class Engine:
    """`next_call()` gives the next outgoing Call (or None) when the line is free.
    `frame_listeners`: each is called (direction "in"/"out", text) for every frame, in the
    order they were registered (the charge point documents who listens)."""

    def __init__(self, transport, clock, next_call, timeout_ms=30000, resolve=None):
        self.transport = transport
        self.clock = clock
        self.timeout_ms = timeout_ms
        self.handlers = {}  # action -> handler(payload, stale) -> response payload
        # resolve(action): the handler of an action not in `handlers`, or None (the charge
        # point finds it in its features' route tuples when a CALL comes: no table in the heap)
        self.resolve = resolve
        self.next_call = next_call
        self.answer_calls = True  # False while the Central System has rejected our boot
        self.frame_listeners = []
        self.inflight = None
        self.sent_at = 0
        # The answers to the latest inbound CALLs, in one buffer taken at boot, oldest first:
        # records of [length (2 bytes), uid length, uid, answer] (Recent below).
        self._recent = Recent(_RECENT_BYTES)
        self.stats = {"in": 0, "out": 0, "bad": 0, "timeouts": 0, "oversize": 0}

    def route(self, action, handler):
        self.handlers[action] = handler

    # -- outgoing -------------------------------------------------------------------------

    def poll(self):
        """Expire the call in flight, then send the next one if the line is free. Over a
        transport whose answers do not outlive the link (`transport.replays` false: a
        WebSocket), a call in flight when the link goes is failed "Offline" at once: its answer
        will not come, and the queue sends it again once the link is back."""
        c = self.inflight
        if c is not None and not self.transport.replays and not self.transport.connected:
            self.inflight = None
            if c.fail:
                c.fail("Offline", "the link went with the call in flight")
            c = None
        if c is not None:
            limit = c.timeout_ms or self.timeout_ms
            if self.clock.since(self.sent_at) < limit:
                return
            self.inflight = None
            self.stats["timeouts"] += 1
            if c.fail:
                c.fail("Timeout", "no answer in %d ms" % limit)
        if not self.transport.can_send():
            return
        c = self.next_call()
        if c is None:
            return
        text = frame_call(c)
        if self._send(text, "out"):
            self.inflight = c
            self.sent_at = self.clock.ticks_ms()
        elif c.fail:
            c.fail("Offline", "transport refused the frame")

    def _send(self, text, direction):
        self._show(direction, text)
        ok = self.transport.send(text)
        if ok:
            self.stats["out"] += 1
        return ok

    def _show(self, direction, text):
        """`text`: the frame's text, or (an inbound one) its head and (size, redacted)."""
        if not isinstance(text, str):
            text, redact = text
        else:
            redact = "AuthorizationKey" in text and '"ChangeConfiguration"' in text
        if redact:
            # write-only: its value reaches no log (the event log, the simulator's)
            text = '[2, "%s", "ChangeConfiguration", {"key": "AuthorizationKey", ...}]' % (
                peek(text)[1])
        for listener in self.frame_listeners:
            listener(direction, text)

    # -- inbound --------------------------------------------------------------------------

    def feed(self, data, stale=False, size=0):
        """Handle one inbound frame: bytes-like (a transport's inbox: parsed where it lies,
        never copied whole) or text. Never raises: bad input (not UTF-8, not JSON) is
        answered or dropped. `size`: the frame's length when `data` is only its head (it
        was over MAX_FRAME)."""
        self.stats["in"] += 1
        if isinstance(data, str):
            data = data.encode()  # MicroPython: the str's own bytes, not a copy
        if len(data) > MAX_FRAME:  # a transport that held it whole all the same
            size = len(data)
        if size:
            self._too_large(head_text(data), size)
            return
        if self.frame_listeners:
            self._show("in", _shown(data))
        if _nested(data):
            self._too_deep(data)
            return
        try:
            msg = json.loads(data)
        except (ValueError, RuntimeError, MemoryError):  # not JSON or UTF-8; nested past heap
            self.stats["bad"] += 1
            return
        if not isinstance(msg, list) or len(msg) < 2 or not isinstance(msg[1], str):
            self.stats["bad"] += 1
            return
        kind = msg[0]
        try:
            if kind == _CALL:
                self._on_call(msg, stale)
            elif kind == _RESULT or kind == _ERROR:
                self._on_answer(msg)
            else:
                self.stats["bad"] += 1
        except MemoryError:
            # No room in the heap for the work or the answer: say so in a few bytes rather
            # than stop the charge point (the frame was acknowledged: an answer is owed).
            self.stats["bad"] += 1
            if kind == _CALL:
                uid = msg[1]
                msg = None
                try:
                    self._send(frame_error(uid, "InternalError", "out of memory"), "out")
                except MemoryError:
                    pass

    def _too_large(self, head, size):
        self.stats["bad"] += 1
        self.stats["oversize"] += 1
        self._show("in", "%s... (%d bytes, over the limit)" % (head, size))
        kind, uid, action = peek(head)
        if kind == _CALL and action is not None and self.answer_calls:
            self._send(frame_error(uid, "FormationViolation",
                                   "message of %d bytes: this charge point takes at most %d"
                                   % (size, MAX_FRAME), {"size": size, "limit": MAX_FRAME}),
                       "out")

    def _too_deep(self, data):
        self.stats["bad"] += 1
        kind, uid, action = peek(head_text(data))
        if kind == _CALL and action is not None and self.answer_calls:
            self._send(frame_error(uid, "FormationViolation",
                                   "nested deeper than %d, or more than %d arrays and objects"
                                   % (_MAX_DEPTH, _MAX_CONTAINERS)), "out")

    def _on_call(self, msg, stale):
        uid = msg[1]
        if not self.answer_calls:
            return
        # QoS 1 redelivery: answer again, do not act again. Long answers are not kept; only
        # reads give them (GetConfiguration), and a read may run again.
        response = self._recent.find(uid)
        if response is not None:
            self._send(response, "out")
            return
        if len(msg) != 4:
            response = frame_error(uid, "ProtocolError", "CALL needs 4 elements")
        elif not isinstance(msg[2], str):
            response = frame_error(uid, "FormationViolation", "action must be a string")
        elif len(uid) > 36:
            response = frame_error(uid, "FormationViolation", "message id longer than 36")
        else:
            try:
                response = json.dumps([_RESULT, uid, self._dispatch(msg[2], msg[3], stale)])
            except CallError as e:
                response = frame_error(uid, e.code, e.description, e.details)
        if len(response) <= _RECENT_TEXT:
            self._recent.add(uid, response)
        self._send(response, "out")

    def _dispatch(self, action, payload, stale):
        handler = self.handlers.get(action)
        if handler is None and self.resolve is not None:
            handler = self.resolve(action)
        if handler is None:
            if action in schema.KNOWN_ACTIONS:
                raise CallError("NotSupported", "%s is not supported" % action)
            raise CallError("NotImplemented", "unknown action %s" % action)
        rules = schema.find(schema.REQUESTS, action)
        if rules is not None:
            schema.check(rules, payload)
        try:
            return handler(payload, stale)
        except CallError:
            raise
        except Exception as e:  # a handler bug must not stop the firmware
            raise CallError("InternalError", "%s: %r" % (action, e))

    def _on_answer(self, msg):
        c = self.inflight
        if c is None or msg[1] != c.uid:
            return  # late or foreign answer: never apply it to another request
        self.inflight = None
        if msg[0] == _RESULT:
            payload = msg[2] if len(msg) > 2 else None
            rules = schema.find(schema.CONFIRMATIONS, c.action)
            try:
                if rules is not None:
                    schema.check(rules, payload)
            except CallError as e:
                if c.fail:
                    c.fail(e.code, "bad %s.conf: %s" % (c.action, e.description))
                return
            if c.done:
                c.done(payload)
        else:
            code = msg[2] if len(msg) > 2 and isinstance(msg[2], str) else "GenericError"
            desc = msg[3] if len(msg) > 3 and isinstance(msg[3], str) else ""
            if c.fail:
                c.fail(code, desc)


def _shown(data):
    """(what an inbound frame's listeners are shown, whether it is to be redacted): its first
    SHOWN bytes as text, "...(N bytes)" after them when it is longer."""
    text = head_text(data, SHOWN)
    if len(data) > SHOWN:
        text = "%s...(%d bytes)" % (text, len(data))
    return text, b"AuthorizationKey" in data and b'"ChangeConfiguration"' in data


def _nested(data):
    """Whether `data` (bytes-like) nests arrays and objects deeper than _MAX_DEPTH, or holds
    more than _MAX_CONTAINERS of them (outside strings). The parser would build them all before it
    failed: 2000 levels in a 4 KB frame take about 54 KB of heap, 1300 empty arrays side by
    side 50 KB, and their MemoryError hit the network thread as well (measured on the twin).
    OCPP 1.6's deepest payload (SetChargingProfile) is 6 deep in its frame; the one with most
    (SendLocalList of SendLocalListMaxLength 24 entries) holds about 50."""
    if data.count(b"[") + data.count(b"{") <= _MAX_DEPTH:
        return False
    depth = containers = 0
    quoted = escaped = False
    for b in data:
        if quoted:
            if escaped:
                escaped = False
            elif b == 0x5C:  # backslash
                escaped = True
            elif b == 0x22:  # closing quote
                quoted = False
        elif b == 0x22:
            quoted = True
        elif b == 0x5B or b == 0x7B:  # [ {
            depth += 1
            containers += 1
            if depth > _MAX_DEPTH or containers > _MAX_CONTAINERS:
                return True
        elif b == 0x5D or b == 0x7D:
            depth -= 1
    return False


class Recent:
    """The latest (uid, answer) pairs in a buffer of `size` bytes allocated once: a new pair
    pushes the oldest out (a memmove), so remembering answers never takes heap, and the
    number kept follows their length (about 20 of a RemoteStartTransaction's)."""

    def __init__(self, size):
        self._buf = bytearray(size)
        self._mv = memoryview(self._buf)
        self._used = 0

    def add(self, uid, answer):
        uid = uid.encode()
        answer = answer.encode()
        n = 3 + len(uid) + len(answer)
        mv = self._mv
        if len(uid) > 255 or n > len(mv):
            return
        used = self._used
        while used + n > len(mv):  # push the oldest out
            first = mv[0] << 8 | mv[1]
            mv[0:used - first] = mv[first:used]
            used -= first
        mv[used] = n >> 8
        mv[used + 1] = n & 0xFF
        mv[used + 2] = len(uid)
        mv[used + 3:used + 3 + len(uid)] = uid
        mv[used + 3 + len(uid):used + n] = answer
        self._used = used + n

    def find(self, uid):
        """The answer kept for `uid` (str), or None."""
        uid = uid.encode()
        buf = self._buf
        at = 0
        found = None
        while at < self._used:
            n = buf[at] << 8 | buf[at + 1]
            k = buf[at + 2]
            if k == len(uid) and buf[at + 3:at + 3 + k] == uid:
                found = at  # the latest, should one id have been answered twice
            at += n
        if found is None:
            return None
        k = buf[found + 2]
        return str(self._mv[found + 3 + k:found + (buf[found] << 8 | buf[found + 1])], "utf-8")
