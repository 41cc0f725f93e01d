"""The Reservation profile (OCPP 1.6 §5.13 ReserveNow, §5.1 CancelReservation).

A feature (`cp.reservations`) whose `tick()` runs every loop step before the statuses are
computed. The sessions ask `rank()` before granting a connector to an
idTag and `claim()` when a transaction starts; the connector shows `Reserved` while
`Connector.reserved` is set. The feature keeps the reservations; the requests and the rules
(chargepoint.model.reserving) are imported for a request and stay while a reservation is
held: without one every connector is free to anyone, and they are dropped.

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
from chargepoint.model import Feature, unload
from chargepoint.ocpp.config import BOOL, RO

RECORD = "reservations"


class Reservations(Feature):
    name = "reservations"
    profile = "Reservation"
    routes = ("ReserveNow", "CancelReservation")
    keys = (("ReserveConnectorZeroSupported", BOOL, True, RO),)

    def __init__(self, cp, services):
        self.cp = cp
        self.rules = None  # chargepoint.model.reserving while a reservation is held
        # [reservationId, connectorId, idTag, parentIdTag or None, expiry unix seconds]
        self.items = []
        self._marked = False  # some connector's `reserved` is set
        records = cp.store.read(RECORD, [])
        if records != []:
            self._rules().load(self, records)
            self._done()

    def _rules(self):
        if self.rules is None:
            from chargepoint.model import reserving

            self.rules = reserving
        return self.rules

    def _done(self):
        """With no reservation held the rules go."""
        if not self.items and self.rules is not None:
            self.rules = None
            unload("chargepoint.model", "reserving")

    # -- ReserveNow, CancelReservation ----------------------------------------------------

    def reserve_now(self, p, stale):
        try:
            return {"status": self._rules().reserve(self, p)}
        finally:
            self._done()

    def cancel_reservation(self, p, stale):
        """Accepted, or Rejected for an unknown reservationId."""
        if not self.items:
            return {"status": "Rejected"}
        try:
            return {"status": self._rules().cancel(self, p["reservationId"])}
        finally:
            self._done()

    # -- what the sessions ask --------------------------------------------------------------

    def rank(self, c, id_tag, parent=None, pending=False):
        """Whether connector c may be granted to `id_tag`: 0 no (held for another idTag),
        1 perhaps (reserved for a group, the idTag's parent not known yet), 2 yes, 3 yes and
        it is reserved for it. `parent` is the idTag's parentIdTag when known (else it is
        looked up in the local list and the cache); only with `pending` (an Authorize
        answer will tell) is an unknown parent a perhaps rather than a no."""
        if not self.items:
            return 2
        return self._rules().rank(self, c, id_tag, parent, pending)

    def claim(self, c, id_tag, parent):
        """A transaction of `id_tag` starts on c: end the reservation it takes up (c's own,
        else one on connector 0) and return its id, or None."""
        if not self.items:
            return None
        try:
            return self._rules().claim(self, c, id_tag, parent)
        finally:
            self._done()

    # -- every loop step ------------------------------------------------------------------

    def tick(self):
        """Drop the reservations past their expiryDate and mark the connectors held."""
        if not self.items:
            if self._marked:
                for c in self.cp.connectors:
                    c.reserved = False
                self._marked = False
            return
        self._rules().tick(self)
        self._marked = True
        self._done()
