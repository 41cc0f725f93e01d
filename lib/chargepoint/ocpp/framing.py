"""OCPP-J frames as the transports see them: the size limit, and a frame's head read without
parsing it. Shared by the engine and every transport (the same limit on each)."""
from micropython import const

# The largest inbound frame the charge point takes, in bytes of its text: a transport reads a
# message up to this size into a buffer it allocated once. A larger one is never held whole:
# the transport reads it through that buffer, keeps its first HEAD bytes and hands over
# (head, stale, size); the engine answers a CALL among them FormationViolation naming the
# limit and drops any other (README "Limits").
MAX_FRAME = const(4096)
HEAD = const(128)  # bytes of an oversized frame kept: enough for '[2,"<36>","<Action>",'
SHOWN = const(480)  # bytes of an inbound frame its listeners are shown (the logs cut before)


def utf8(data):
    """Whether bytes-like `data` is UTF-8 (RFC 3629: no overlong forms, no surrogates),
    checked where it lies: nothing of its size is allocated, as decoding it would be."""
    if not len(data) or max(data) < 0x80:  # ASCII, as nearly every OCPP frame
        return True
    need = 0
    lo = hi = 0
    for c in data:
        if need:
            if c < lo or c > hi:
                return False
            lo = 0x80
            hi = 0xBF
            need -= 1
        elif c >= 0x80:
            lo = 0x80
            hi = 0xBF
            if 0xC2 <= c <= 0xDF:
                need = 1
            elif 0xE0 <= c <= 0xEF:
                need = 2
                if c == 0xE0:
                    lo = 0xA0  # not overlong
                elif c == 0xED:
                    hi = 0x9F  # not a surrogate
            elif 0xF0 <= c <= 0xF4:
                need = 3
                if c == 0xF0:
                    lo = 0x90
                elif c == 0xF4:
                    hi = 0x8F  # not past U+10FFFF
            else:
                return False
    return not need


def head_text(data, n=HEAD):
    """The first `n` bytes of a frame (bytes-like; a str is cut as it is) as text, less the
    end of a character the cut split; "" when they are not UTF-8."""
    if isinstance(data, str):
        return data[:n]
    view = memoryview(data)
    end = min(n, len(view))
    for k in range(end, max(end - 4, -1), -1):
        try:
            return str(view[:k], "utf-8")
        except UnicodeError:
            pass
    return ""


def peek(head):
    """(message type, unique id, action) read from the start of a frame without parsing it
    (it may be cut short, or too large to parse): `[2,"id","Action",` gives (2, "id",
    "Action"); `[3,"id",` (3, "id", None); what does not read so, (None, None, None)."""
    head = head[:HEAD].replace(" ", "")
    if len(head) < 5 or head[0] != "[" or head[2:4] != ',"' or head[1] not in "234":
        return None, None, None
    end = head.find('"', 4)
    if end < 5 or end > 40:
        return None, None, None
    uid = head[4:end]
    action = None
    if head[1] == "2" and head[end + 1:end + 3] == ',"':
        stop = head.find('"', end + 3)
        if stop > end + 3 and head[stop + 1:stop + 2] == ",":
            action = head[end + 3:stop]
    return ord(head[1]) - 48, uid, action
