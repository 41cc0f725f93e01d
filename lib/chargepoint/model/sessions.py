"""Charging sessions: authorisation, transactions, the relay/pilot safety rules.

Safety rule (checked every loop step, before anything else and without waiting on the
network): the relay is closed only while a transaction is running and authorised, there is no
fault, the pilot offers current and the EV asks for charge (state C or D). Everything else
opens it.

A running transaction is a record on flash, "tx<connector id>", short keys (legend): ref
(our reference until the Central System gives an id), tag (idTag), start (meterStart, Wh), ts
(its timestamp), ok (authorised: false after an Invalid StartTransaction answer), id
(transactionId or None), last ([Wh, timestamp], the latest reading saved), conn (connector
id), profile (its TxProfile), parent (parentIdTag), resv (reservationId), begin (the
Transaction.Begin sample for StopTransaction's transactionData).
"""
from micropython import const

from chargepoint.model import metering
from chargepoint.model.board import fault_code
from chargepoint.model.connector import AUTH_AT, AUTH_PARENT, AUTH_PROFILE, AUTH_TAG

_AUTHORIZE_TIMEOUT_MS = 10000
_MIN_AMPS = 6  # below this the pilot offers nothing (IEC 61851-1)
# A limit that withdraws the offer while the EV draws: the EV must stop within 3 s; the relay
# opens when it does, or then (not under load before). Faults, unplug, lost authorisation and
# stops open it at once.
_WITHDRAW_MS = const(3000)


class Sessions:
    def __init__(self, cp):
        self.cp = cp

    # -- the safety path and the connector's own events -----------------------------------

    def step(self, c):
        cp = self.cp
        hw = c.hw
        state = hw.pilot.state()
        c.pilot = state
        plugged = state in ("B", "C", "D")
        if not plugged:
            c.start_fault = None
        c.fault = c.start_fault or fault_code(hw, state)
        if cp.safe_mode is not None:  # (no session starts, the relay stays open)
            c.fault = "InternalError"
        if c.plugged and not plugged:
            c.plugged = False
            c.finishing = False
            if c.tx is not None and cp.config.get("StopTransactionOnEVSideDisconnect"):
                self.stop(c, "EVDisconnected")
            if hw.lock is not None and cp.config.get("UnlockConnectorOnEVSideDisconnect"):
                hw.lock.unlock()
        c.plugged = plugged
        if c.tx is not None and c.fault == "GroundFailure":
            # a residual-current trip ends the session: charging never resumes by itself
            self.stop(c, "Other")
        if c.auth is not None and c.tx is None:
            if plugged and c.fault == "NoError" and c.operative:
                self.start(c)
            elif cp.clock.since(c.auth[AUTH_AT]) >= cp.config.get("ConnectionTimeOut") * 1000:
                c.auth = None
        # the outputs follow from this step's inputs, in this same call
        tx = c.tx
        if tx is not None and "cap" in tx and hw.meter.energy_wh() >= tx["cap"]:
            del tx["cap"]  # MaxEnergyOnInvalidId delivered (on_tx_answer)
            tx["ok"] = False
            cp.store.write("tx%d" % c.id, tx)
        live = tx is not None and tx["ok"] and c.usable() and plugged
        offer = None
        if live:
            offer = hw.max_amps if c.limit is None else min(hw.max_amps, c.limit)
            if offer < _MIN_AMPS:
                offer = None  # SuspendedEVSE: the PWM is withdrawn
        if offer != c.offered:
            hw.pilot.offer(offer)
            c.offered = offer
        charging = state in ("C", "D")
        close = offer is not None and charging
        if live and not close and charging and hw.relay.get():
            if c.withdrawn is None:
                c.withdrawn = cp.clock.ticks_ms()
            close = cp.clock.since(c.withdrawn) < _WITHDRAW_MS
        else:
            c.withdrawn = None
        if hw.relay.get() != close:
            hw.relay.set(close)

    # -- authorisation --------------------------------------------------------------------

    def tap(self, id_tag):
        """A card on the reader: stop the session it started, or one started by a card of its
        group (the same parentIdTag: OCPP 1.6 local stop), or begin one on a free connector."""
        cp = self.cp
        for c in cp.connectors:
            if c.tx is not None and c.tx["tag"] == id_tag:
                self.stop(c, "Local", id_tag)
                return "stopped"
            if c.tx is None and c.auth is not None and c.auth[AUTH_TAG] == id_tag:
                c.auth = None  # the same card again before plugging in: cancel
                return "cancelled"
        target = self.free_connector(id_tag, True)
        group = False  # a running transaction has a parentIdTag this card may share
        for c in cp.connectors:
            if c.tx is not None and c.tx.get("parent"):
                group = True
        if target is None and not group:
            return "refused"
        self.authorize(target, id_tag, None, group)
        return "authorizing"

    def rank(self, c, id_tag, parent=None, pending=False):
        """Whether connector c may be granted to `id_tag`, as Reservations.rank says (2, yes,
        on a charge point without the Reservation feature)."""
        reservations = self.cp.reservations
        return 2 if reservations is None else reservations.rank(c, id_tag, parent, pending)

    def free_connector(self, id_tag, pending):
        """The idle connector a session of `id_tag` should take: one reserved for it, then one
        surely free, then one reserved for a group it may belong to (`pending` as in
        Reservations.rank); among equals a plugged one, else the first. None when every idle
        one is held for other idTags."""
        rank = self.rank
        target = None
        best = 0
        for c in self.cp.connectors:
            if c.idle():
                score = rank(c, id_tag, None, pending) * 2
                if score and c.plugged:
                    score += 1
                if score > best:
                    target = c
                    best = score
        return target

    def authorize(self, c, id_tag, profile=None, group=False):
        """Authorise `id_tag` for connector `c` (None: no free connector). With `group`, a
        card whose parentIdTag is that of a running transaction stops it instead."""
        cp = self.cp
        cached, parent = cp.known(id_tag) or (None, None)  # local list, then cache
        if group and cached == "Accepted" and self._group_stop(id_tag, parent):
            return
        if not cp.online():
            self._offline_decision(c, id_tag, cached, profile, parent)
            return
        if cached == "Accepted" and cp.config.get("LocalPreAuthorize"):
            self.grant(c, id_tag, profile, parent)
            return
        if c is not None:
            c.authorizing = id_tag

        def done(payload):
            info = payload["idTagInfo"]
            cp.cache_info(id_tag, info)
            ok = info["status"] == "Accepted"
            if c is not None:
                c.authorizing = None
            if ok and group and self._group_stop(id_tag, info.get("parentIdTag")):
                return
            if ok:
                self.grant(c, id_tag, profile, info.get("parentIdTag"))

        def fail(code, _):
            if c is not None:
                c.authorizing = None
            if code in ("Timeout", "Offline"):
                self._offline_decision(c, id_tag, cached, profile, parent)

        cp.call("Authorize", {"idTag": id_tag}, done, fail, _AUTHORIZE_TIMEOUT_MS)

    def _group_stop(self, id_tag, parent):
        """Stop the transaction started by a card of `parent`'s group; True if there was one."""
        if not parent:
            return False
        for c in self.cp.connectors:
            if c.tx is not None and c.tx.get("parent") == parent:
                self.stop(c, "Local", id_tag)
                return True
        return False

    def _offline_decision(self, c, id_tag, cached, profile, parent):
        cfg = self.cp.config
        if cached == "Accepted" and cfg.get("LocalAuthorizeOffline"):
            self.grant(c, id_tag, profile, parent)
        elif cached is None and cfg.get("AllowOfflineTxForUnknownId"):
            self.grant(c, id_tag, profile)

    def grant(self, c, id_tag, profile, parent=None):
        if c is None:
            return
        c.authorizing = None
        # a connector held by a reservation is not granted to another idTag
        if c.tx is None and self.rank(c, id_tag, parent):
            c.auth = [id_tag, self.cp.clock.ticks_ms(), profile, parent]

    # -- transactions ---------------------------------------------------------------------

    def start(self, c):
        cp = self.cp
        auth = c.auth
        id_tag, profile, parent = auth[AUTH_TAG], auth[AUTH_PROFILE], auth[AUTH_PARENT]
        c.auth = None
        c.finishing = False
        if not cp.txq.room():  # 500 transactions queued offline: no session goes unrecorded
            return
        # Checks before going live; a failure means no StartTransaction, Faulted until the
        # cable is taken out: the residual-current monitor's self-test (where it has a test
        # output), then the cable lock of a socket outlet (OCTT TC_024).
        rcd = c.hw.rcd
        lock = c.hw.lock
        if getattr(rcd, "testable", False) and not rcd.self_test():
            c.start_fault = "GroundFailure"
        elif lock is not None and not lock.lock():
            c.start_fault = "ConnectorLockFailure"
        if c.start_fault is not None:
            c.fault = c.start_fault
            return
        wh = c.hw.meter.energy_wh()
        stamp = cp.clock.stamp()
        tx = {"ref": cp.new_ref(), "tag": id_tag, "start": wh, "ts": stamp, "ok": True,
              "id": None, "last": [wh, stamp], "conn": c.id}
        if profile is not None:
            tx["profile"] = profile
        if parent:
            tx["parent"] = parent  # a card of the same group may stop it
        reservation = None if cp.reservations is None else cp.reservations.claim(c, id_tag,
                                                                                  parent)
        if reservation is not None:
            tx["resv"] = reservation  # the StartTransaction ends it (§5.13)
        measurands = cp.config.get("StopTxnSampledData")
        if measurands:  # kept on flash only, until the StopTransaction takes it
            cp.store.write("txb%d" % c.id, metering.sample(c, measurands, "Transaction.Begin",
                                                           stamp))
        else:
            cp.store.remove("txb%d" % c.id)
        # The record first: after a power cut it is enough to rebuild the StartTransaction.
        cp.store.write("tx%d" % c.id, tx)
        self.queue_start(tx)
        c.tx = tx
        c.sampled_at = c.saved_at = cp.clock.ticks_ms()

    def queue_start(self, tx):
        payload = {"connectorId": tx["conn"], "idTag": tx["tag"], "meterStart": tx["start"],
                   "timestamp": tx["ts"]}
        if "resv" in tx:
            payload["reservationId"] = tx["resv"]
        self.cp.txq.push(self.cp.new_uid(), "StartTransaction", payload, tx["ref"])

    def stop(self, c, reason, id_tag=None):
        tx = c.tx
        hw = c.hw
        hw.relay.set(False)  # at once, not at the next step
        hw.pilot.offer(None)
        c.offered = None
        c.tx = None
        c.finishing = c.plugged  # a transaction ends in Finishing until the cable is out
        if hw.lock is not None and reason != "EVDisconnected":
            hw.lock.unlock()  # the relay is open: release the cable (unplug has its own rule)
        self.queue_stop(tx, hw.meter.energy_wh(), self.cp.clock.stamp(), reason, id_tag)
        if self.cp.availability is not None:
            self.cp.availability.transaction_ended(c)

    def queue_stop(self, tx, wh, stamp, reason, id_tag=None):
        cp = self.cp
        payload = {"meterStop": wh, "timestamp": stamp, "reason": reason}
        if id_tag:
            payload["idTag"] = id_tag
        data = []
        begin = cp.store.read("txb%d" % tx["conn"])
        if begin is not None:
            data.append(begin)
        if "Energy.Active.Import.Register" in cp.config.get("StopTxnSampledData"):
            data.append({"timestamp": stamp, "sampledValue": [{
                "value": str(wh), "context": "Transaction.End",
                "measurand": "Energy.Active.Import.Register", "location": "Outlet",
                "unit": "Wh"}]})
        if data:
            payload["transactionData"] = data
        # The StopTransaction is queued before the record goes: a power cut in between is
        # recognised at boot by the queued stop, and the stop is not made twice.
        cp.txq.push(cp.new_uid(), "StopTransaction", payload, tx["ref"])
        self._forget(tx["conn"])

    def _forget(self, cid):
        store = self.cp.store
        store.remove("tx%d" % cid)
        store.remove("txb%d" % cid)

    def recover(self, c):
        """At boot: a transaction that was running when the power went is stopped (PowerLoss).
        A record it cannot use (of another firmware, say) is set aside and reported."""
        name = "tx%d" % c.id
        try:
            self._recover(c, name)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
            self.cp.store.discard(name, "not a transaction: %s" % type(e).__name__)

    def _recover(self, c, name):
        cp = self.cp
        tx = cp.store.read(name, {})
        if not tx:
            return
        txq = cp.txq
        ref = tx["ref"]
        if ref not in txq.txids and not txq.has("StartTransaction", ref):
            self.queue_start(tx)
        if txq.has("StopTransaction", ref):
            self._forget(c.id)
            return
        wh, stamp = tx["last"]
        now_wh = c.hw.meter.energy_wh()
        self.queue_stop(tx, now_wh if now_wh > wh else wh, stamp, "PowerLoss")

    def on_tx_answer(self, action, record, payload):
        """The transaction queue's answer to one of our messages (None: given up)."""
        cp = self.cp
        info = payload.get("idTagInfo") if payload else None
        tag = record["p"].get("idTag")
        if info is not None and tag:
            cp.cache_info(tag, info)
        if action != "StartTransaction" or payload is None:
            return
        for c in cp.connectors:
            tx = c.tx
            if tx is not None and tx["ref"] == record["r"]:
                tx["id"] = payload["transactionId"]
                if info.get("parentIdTag"):
                    tx["parent"] = info["parentIdTag"]
                if info["status"] != "Accepted":
                    if cp.config.get("StopTransactionOnInvalidId"):
                        self.stop(c, "DeAuthorized")
                        return
                    # energy goes on until MaxEnergyOnInvalidId Wh since the start, then
                    # stops (SuspendedEVSE) until the EV is unplugged
                    cap = tx["start"] + cp.config.get("MaxEnergyOnInvalidId")
                    if c.hw.meter.energy_wh() < cap:
                        tx["cap"] = cap
                    else:
                        tx["ok"] = False
                cp.store.write("tx%d" % c.id, tx)

    def save(self, c):
        """Persist the running transaction's latest energy reading."""
        tx = c.tx
        tx["last"] = [c.hw.meter.energy_wh(), self.cp.clock.stamp()]
        self.cp.store.write("tx%d" % c.id, tx)
        c.saved_at = self.cp.clock.ticks_ms()
