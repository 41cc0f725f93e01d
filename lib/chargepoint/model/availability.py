"""Availability (OCPP 1.6 §5.2 ChangeAvailability): every connector's and the charge point's
own (connector 0), kept on flash. The one home of ChangeAvailability.

- One connector changes only that connector; connector 0 has an availability of its own.
- Inoperative: an idle connector becomes Unavailable at once; a busy one answers Scheduled
  and changes when its transaction ends (`transaction_ended`); connector 0 follows once no
  connector waits any more. Operative on connector 0 makes it and every connector Operative.
- The record "availability": {"<connector id>": operative, "0": ..., "s": {the scheduled
  changes, same keys}}. A change scheduled for the end of a transaction applies at the next
  boot: no transaction survives a boot (a power cut ends it with PowerLoss), so a power cut
  during the transaction still makes the change.
- A stale request (the broker's backlog) is answered Rejected without acting.
"""
from chargepoint.model import Feature

_RECORD = "availability"
_ACCEPTED = {"status": "Accepted"}
_REJECTED = {"status": "Rejected"}


class Availability(Feature):
    name = "availability"
    routes = ("ChangeAvailability",)

    def __init__(self, cp, services):
        self.cp = cp
        saved = cp.store.read(_RECORD, {})
        scheduled = saved.pop("s", None)  # no transaction survives a boot: they apply now
        if scheduled:
            saved.update(scheduled)
            cp.store.write(_RECORD, saved)
        self.operative0 = saved.get("0", True)
        self.scheduled0 = None  # connector 0's change waiting for the transactions to end
        for c in cp.connectors:
            c.operative = saved.get(str(c.id), True)

    def change_availability(self, p, stale):
        cp = self.cp
        if stale:
            cp.stale_rejected += 1
            return _REJECTED
        cid = p["connectorId"]
        operative = p["type"] == "Operative"
        if cid == 0:
            targets = cp.connectors
        else:
            c = cp.connector(cid)
            if c is None:
                return _REJECTED
            targets = [c]
        busy = [c for c in targets if c.tx is not None]
        if not busy:
            self.set(0 if cid == 0 else targets[0], operative)
            return _ACCEPTED
        for c in busy:  # the busy ones change after their transaction, the idle ones now
            c.scheduled = operative
        if cid == 0:
            self.scheduled0 = operative
        for c in targets:
            if c.tx is None:
                self.set(c, operative)
        self._write(cp.store.read(_RECORD, {}))  # a power cut first still applies them
        return {"status": "Scheduled"}

    def transaction_ended(self, c):
        """Connector c's transaction is over: the change scheduled for it applies now."""
        if c.scheduled is not None:
            self.set(c, c.scheduled)

    def set(self, c, operative):
        """Apply a change to connector c, or with 0 to the charge point and every connector.
        Connector 0 follows a change scheduled for it once no connector waits any more."""
        availability = self.cp.store.read(_RECORD, {})
        if c == 0:
            self.operative0 = operative
            self.scheduled0 = None
            availability["0"] = operative
        for each in (self.cp.connectors if c == 0 else [c]):
            each.operative = operative
            each.scheduled = None
            availability[str(each.id)] = operative
        if self.scheduled0 is not None and not [x for x in self.cp.connectors
                                                if x.scheduled is not None]:
            self.operative0 = availability["0"] = self.scheduled0
            self.scheduled0 = None
        self._write(availability)

    def _write(self, availability):
        scheduled = {}
        if self.scheduled0 is not None:
            scheduled["0"] = self.scheduled0
        for x in self.cp.connectors:
            if x.scheduled is not None:
                scheduled[str(x.id)] = x.scheduled
        availability.pop("s", None)
        if scheduled:
            availability["s"] = scheduled
        self.cp.store.write(_RECORD, availability)
