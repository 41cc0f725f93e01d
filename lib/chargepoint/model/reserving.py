"""What reservations do (chargepoint.model.reservation, the feature, holds them): ReserveNow
and CancelReservation judged, the rules that hold a connector for an idTag, expiry. Imported
by the feature for a request and kept while a reservation is held; dropped when none is (the
feature's _done()). `r` below is the feature."""
from micropython import const

from chargepoint.model.board import DEGRADED
from chargepoint.model.connector import AUTH_PARENT, AUTH_TAG
from chargepoint.model.reservation import RECORD
from chargepoint.ocpp.timestamps import parse_iso

# a reservation: [reservationId, connectorId, idTag, parentIdTag or None, expiry unix seconds]
_ID = const(0)
_CONN = const(1)
_TAG = const(2)
_PARENT = const(3)
_EXPIRY = const(4)


def _same(a, b):
    # IdToken is a CiString: case-insensitive
    return a == b or a.upper() == b.upper()


def _valid(item):
    return (isinstance(item, list) and len(item) == 5 and isinstance(item[_ID], int)
            and isinstance(item[_CONN], int) and isinstance(item[_TAG], str)
            and isinstance(item[_EXPIRY], int))


def load(r, records):
    """The stored reservations (what is not one is left out)."""
    r.items = [x for x in records if _valid(x)] if isinstance(records, list) else []


def _save(r):
    r.cp.store.write(RECORD, r.items)


# -- ReserveNow, CancelReservation --------------------------------------------------------

def reserve(r, p):
    """ReserveNow.req: Accepted, Faulted, Occupied, Rejected or Unavailable."""
    cp = r.cp
    cid = p["connectorId"]
    expiry = parse_iso(p["expiryDate"])
    now = cp.clock.wall()
    if cid > len(cp.connectors) or (now is not None and expiry <= now):
        return "Rejected"
    if cid == 0 and not cp.config.get("ReserveConnectorZeroSupported"):
        return "Rejected"
    rid = p["reservationId"]
    old = _find(r, rid)
    if old is not None:
        r.items.remove(old)  # judged as if it were gone (§5.13: replaced)
    tag = p["idTag"]
    parent = p.get("parentIdTag")
    status = _zero(r) if cid == 0 else _one(r, cp.connector(cid), tag, parent)
    if status == "Accepted":
        r.items.append([rid, cid, tag, parent, expiry])
        _save(r)
    elif old is not None:
        r.items.append(old)
    return status


def _one(r, c, tag, parent):
    if c.fault not in DEGRADED:
        return "Faulted"
    if not c.operative:
        return "Unavailable"
    if (c.tx is not None or c.auth is not None or c.authorizing is not None
            or c.finishing or c.plugged or _on(r, c.id) is not None
            or _blocked(r, c, tag, parent)):
        return "Occupied"
    return "Accepted"


def _zero(r):
    # at least one connector must stay free for each reservation on connector 0
    spare = 0
    operative = faulted = 0
    for c in r.cp.connectors:
        if _free(r, c):
            spare += 1
        if c.operative:
            operative += 1
            if c.fault not in DEGRADED:
                faulted += 1
    if spare > _needed(r, None, None):
        return "Accepted"
    if not operative or not r.cp.availability.operative0:
        return "Unavailable"
    return "Faulted" if faulted == operative else "Occupied"


def cancel(r, rid):
    """CancelReservation.req: Accepted, or Rejected for an unknown reservationId."""
    x = _find(r, rid)
    if x is None:
        return "Rejected"
    r.items.remove(x)
    _save(r)
    return "Accepted"


# -- what the sessions ask ----------------------------------------------------------------

def rank(r, c, id_tag, parent, pending):
    """Reservations.rank() while a reservation is held."""
    own = _on(r, c.id)
    if own is not None:
        return (0, 1, 3)[_accepts(r, own, id_tag, parent, pending)]
    return 0 if _blocked(r, c, id_tag, parent, pending) else 2


def claim(r, c, id_tag, parent):
    """Reservations.claim() while a reservation is held."""
    x = _on(r, c.id)
    if x is None or not _accepts(r, x, id_tag, parent):
        x = None
        for each in r.items:
            if each[_CONN] == 0 and _accepts(r, each, id_tag, parent):
                x = each
                break
    if x is None:
        return None
    r.items.remove(x)
    _save(r)
    return x[_ID]


# -- every loop step ----------------------------------------------------------------------

def tick(r):
    """Drop the reservations past their expiryDate and mark the connectors held."""
    now = r.cp.clock.wall()
    if now is not None:
        for x in r.items:
            if now >= x[_EXPIRY]:
                _expire(r, now)
                break
    for c in r.cp.connectors:
        c.reserved = _on(r, c.id) is not None or (_free(r, c) and _blocked(r, c, None, None))


def _expire(r, now):
    # (a comprehension in tick() would make `now` a cell there: an object every loop)
    r.items = [x for x in r.items if now < x[_EXPIRY]]
    _save(r)


# -- the rules ----------------------------------------------------------------------------

def _find(r, rid):
    for x in r.items:
        if x[_ID] == rid:
            return x
    return None


def _on(r, cid):
    for x in r.items:
        if x[_CONN] == cid:
            return x
    return None


def _free(r, c):
    return (c.tx is None and c.auth is None and c.operative and c.fault == "NoError"
            and not c.finishing and _on(r, c.id) is None)


def _accepts(r, x, id_tag, parent, pending=False):
    """Whether reservation x accepts `id_tag`: 2 yes, 0 no, 1 perhaps (with `pending`, when
    x is for a group and the idTag's parent is not known)."""
    if _same(x[_TAG], id_tag):
        return 2
    group = x[_PARENT]
    if not group:
        return 0
    if parent is None:
        hit = r.cp.known(id_tag)
        parent = hit[1] if hit is not None else None
    if parent is None:
        return 1 if pending else 0
    return 2 if _same(parent, group) else 0


def _needed(r, id_tag, parent, pending=False):
    """How many free connectors the reservations on connector 0 hold, leaving out those
    `id_tag` may take up and those whose idTag is already granted a connector."""
    n = 0
    for x in r.items:
        if x[_CONN] != 0 or (id_tag is not None and _accepts(r, x, id_tag, parent, pending)):
            continue
        taken = False
        for c in r.cp.connectors:
            a = c.auth
            if a is not None and c.tx is None and (
                    _same(x[_TAG], a[AUTH_TAG]) or (
                        x[_PARENT] and a[AUTH_PARENT] and _same(x[_PARENT], a[AUTH_PARENT]))):
                taken = True
                break
        if not taken:
            n += 1
    return n


def _blocked(r, c, id_tag, parent, pending=False):
    """Whether the reservations on connector 0 keep free connector c from `id_tag` (None:
    from anyone): fewer other connectors are free than they hold."""
    need = _needed(r, id_tag, parent, pending)
    if not need:
        return False
    spare = 0
    for x in r.cp.connectors:
        if x is not c and _free(r, x):
            spare += 1
    return spare < need
