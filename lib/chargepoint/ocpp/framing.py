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
