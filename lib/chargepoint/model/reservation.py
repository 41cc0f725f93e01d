"""The Reservation profile (OCPP 1.6 §5.13 ReserveNow, §5.1 CancelReservation).

A feature (`cp.reservations`) whose `tick()` runs every loop step before the statuses are
computed. The sessions ask `rank()` before granting a connector to an
idTag and `claim()` when a transaction starts; the connector shows `Reserved` while
`Connector.reserved` is set.

Choices where the specification leaves room:
- A connector is free (it counts for a reservation on connector 0) when it has no transaction,
  no granted authorisation, no reservation of its own, is operative, not faulted and not
  Finishing; a plugged EV does not take it. When no more connectors are free than there are
  reservations on connector 0 (not yet taken up by an authorisation of their idTag), the free
  ones refuse other idTags and show Reserved.
- A reservation accepts its idTag, or one whose parentIdTag (from the request, else the local
  list or the cache, else the Authorize answer) equals the reservation's parentIdTag; such a
  transaction carries the reservationId and ends the reservation too.
- ReserveNow with the id of an existing reservation is judged as if that one were gone; if
  the new one is refused the old one stays. An expiryDate already passed is Rejected.
- A stale ReserveNow/CancelReservation (from the broker's backlog) is carried out: the
  expiryDate bounds a reservation anyway.
- A reservation outlives a ChangeAvailability or a fault (the connector shows Unavailable or
  Faulted meanwhile) until it expires or is cancelled.
- Expiry follows the wall clock: without it (after a boot, until BootNotification or a
  Heartbeat sets it) a restored reservation holds; those passed are dropped as soon as it is
  known, before the next StatusNotification.
"""
from micropython import const

from chargepoint.model.board import DEGRADED
from chargepoint.model.connector import AUTH_PARENT, AUTH_TAG
from chargepoint.model import Feature
from chargepoint.ocpp.config import BOOL, RO
from chargepoint.ocpp.timestamps import parse_iso

_RECORD = "reservations"
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


class Reservations(Feature):
    name = "reservations"
    profile = "Reservation"
    routes = ("ReserveNow", "CancelReservation")
    keys = (("ReserveConnectorZeroSupported", BOOL, True, RO),)

    def __init__(self, cp, services):
        self.cp = cp
        records = cp.store.read(_RECORD, [])
        self.items = [r for r in records if _valid(r)] if isinstance(records, list) else []
        self._marked = False  # some connector's `reserved` is set

    def _save(self):
        self.cp.store.write(_RECORD, self.items)

    # -- ReserveNow, CancelReservation ----------------------------------------------------

    def reserve_now(self, p, stale):
        return {"status": self.reserve(p)}

    def reserve(self, p):
        """ReserveNow.req: Accepted, Faulted, Occupied, Rejected or Unavailable."""
        cp = self.cp
        cid = p["connectorId"]
        expiry = parse_iso(p["expiryDate"])
        now = cp.clock.wall()
        if cid > len(cp.connectors) or (now is not None and expiry <= now):
            return "Rejected"
        if cid == 0 and not cp.config.get("ReserveConnectorZeroSupported"):
            return "Rejected"
        rid = p["reservationId"]
        old = self._find(rid)
        if old is not None:
            self.items.remove(old)  # judged as if it were gone (§5.13: replaced)
        tag = p["idTag"]
        parent = p.get("parentIdTag")
        status = self._zero() if cid == 0 else self._one(cp.connector(cid), tag, parent)
        if status == "Accepted":
            self.items.append([rid, cid, tag, parent, expiry])
            self._save()
        elif old is not None:
            self.items.append(old)
        return status

    def _one(self, c, tag, parent):
        if c.fault not in DEGRADED:
            return "Faulted"
        if not c.operative:
            return "Unavailable"
        if (c.tx is not None or c.auth is not None or c.authorizing is not None
                or c.finishing or c.plugged or self._on(c.id) is not None
                or self._blocked(c, tag, parent)):
            return "Occupied"
        return "Accepted"

    def _zero(self):
        # at least one connector must stay free for each reservation on connector 0
        spare = 0
        operative = faulted = 0
        for c in self.cp.connectors:
            if self._free(c):
                spare += 1
            if c.operative:
                operative += 1
                if c.fault not in DEGRADED:
                    faulted += 1
        if spare > self._needed(None, None):
            return "Accepted"
        if not operative or not self.cp.availability.operative0:
            return "Unavailable"
        return "Faulted" if faulted == operative else "Occupied"

    def cancel_reservation(self, p, stale):
        """Accepted, or Rejected for an unknown reservationId."""
        r = self._find(p["reservationId"])
        if r is None:
            return {"status": "Rejected"}
        self.items.remove(r)
        self._save()
        return {"status": "Accepted"}

    # -- what the sessions ask --------------------------------------------------------------

    def rank(self, c, id_tag, parent=None, pending=False):
        """Whether connector c may be granted to `id_tag`: 0 no (held for another idTag),
        1 perhaps (reserved for a group, the idTag's parent not known yet), 2 yes, 3 yes and
        it is reserved for it. `parent` is the idTag's parentIdTag when known (else it is
        looked up in the local list and the cache); only with `pending` (an Authorize
        answer will tell) is an unknown parent a perhaps rather than a no."""
        if not self.items:
            return 2
        own = self._on(c.id)
        if own is not None:
            return (0, 1, 3)[self._accepts(own, id_tag, parent, pending)]
        return 0 if self._blocked(c, id_tag, parent, pending) else 2

    def claim(self, c, id_tag, parent):
        """A transaction of `id_tag` starts on c: end the reservation it takes up (c's own,
        else one on connector 0) and return its id, or None."""
        if not self.items:
            return None
        r = self._on(c.id)
        if r is None or not self._accepts(r, id_tag, parent):
            r = None
            for each in self.items:
                if each[_CONN] == 0 and self._accepts(each, id_tag, parent):
                    r = each
                    break
        if r is None:
            return None
        self.items.remove(r)
        self._save()
        return r[_ID]

    # -- every loop step ------------------------------------------------------------------

    def tick(self):
        """Drop the reservations past their expiryDate and mark the connectors held."""
        items = self.items
        if not items:
            if self._marked:
                for c in self.cp.connectors:
                    c.reserved = False
                self._marked = False
            return
        now = self.cp.clock.wall()
        if now is not None:
            for r in items:
                if now >= r[_EXPIRY]:
                    self._expire(now)
                    break
        for c in self.cp.connectors:
            c.reserved = self._on(c.id) is not None or (self._free(c)
                                                        and self._blocked(c, None, None))
        self._marked = True

    def _expire(self, now):
        # (a comprehension in tick() would make `now` a cell there: an object every loop)
        self.items = [x for x in self.items if now < x[_EXPIRY]]
        self._save()

    # -- the rules ------------------------------------------------------------------------

    def _find(self, rid):
        for r in self.items:
            if r[_ID] == rid:
                return r
        return None

    def _on(self, cid):
        for r in self.items:
            if r[_CONN] == cid:
                return r
        return None

    def _free(self, c):
        return (c.tx is None and c.auth is None and c.operative and c.fault == "NoError"
                and not c.finishing and self._on(c.id) is None)

    def _accepts(self, r, id_tag, parent, pending=False):
        """Whether reservation r accepts `id_tag`: 2 yes, 0 no, 1 perhaps (with `pending`,
        when r is for a group and the idTag's parent is not known)."""
        if _same(r[_TAG], id_tag):
            return 2
        group = r[_PARENT]
        if not group:
            return 0
        if parent is None:
            hit = self.cp.known(id_tag)
            parent = hit[1] if hit is not None else None
        if parent is None:
            return 1 if pending else 0
        return 2 if _same(parent, group) else 0

    def _needed(self, id_tag, parent, pending=False):
        """How many free connectors the reservations on connector 0 hold, leaving out those
        `id_tag` may take up and those whose idTag is already granted a connector."""
        n = 0
        for r in self.items:
            if r[_CONN] != 0 or (id_tag is not None and self._accepts(r, id_tag, parent,
                                                                      pending)):
                continue
            taken = False
            for c in self.cp.connectors:
                a = c.auth
                if a is not None and c.tx is None and (
                        _same(r[_TAG], a[AUTH_TAG]) or (
                            r[_PARENT] and a[AUTH_PARENT] and _same(r[_PARENT], a[AUTH_PARENT]))):
                    taken = True
                    break
            if not taken:
                n += 1
        return n

    def _blocked(self, c, id_tag, parent, pending=False):
        """Whether the reservations on connector 0 keep free connector c from `id_tag`
        (None: from anyone): fewer other connectors are free than they hold."""
        need = self._needed(id_tag, parent, pending)
        if not need:
            return False
        spare = 0
        for x in self.cp.connectors:
            if x is not c and self._free(x):
                spare += 1
        return spare < need
