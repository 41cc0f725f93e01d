"""Central System initiated operations of the Core profile, and TriggerMessage (Remote Trigger).

Stale rule: a CALL the transport flags as stale (delivered from the broker's backlog of a
persistent session right after a reconnect, so possibly queued for a long time) is answered
but an actuating one (RemoteStart/Stop, Reset, UnlockConnector; ChangeAvailability in
chargepoint.model.availability) is answered Rejected/UnlockFailed without acting: the
operator's intent may be gone. Reads and configuration changes are carried out.
"""
from chargepoint.model import Feature
from chargepoint.ocpp.errors import CallError

_ACCEPTED = {"status": "Accepted"}
_REJECTED = {"status": "Rejected"}


class Remote(Feature):
    name = "remote"
    profile = "RemoteTrigger"  # (the Core operations are every charge point's)
    routes = ("ChangeConfiguration", "ClearCache", "DataTransfer", "GetConfiguration",
              "RemoteStartTransaction", "RemoteStopTransaction", "Reset", "TriggerMessage",
              "UnlockConnector")

    def __init__(self, cp, services):
        self.cp = cp

    def _stale(self):
        self.cp.stale_rejected += 1
        return _REJECTED

    def change_configuration(self, p, stale):
        return {"status": self.cp.config.change(p["key"], p["value"])}

    def clear_cache(self, p, stale):
        cp = self.cp
        if not cp.config.get("AuthorizationCacheEnabled"):
            return _REJECTED
        cp.cache.clear()
        return _ACCEPTED

    def data_transfer(self, p, stale):
        vendor = self.cp.vendor(p["vendorId"])  # the features that declare a vendor_id
        if vendor is None:
            return {"status": "UnknownVendorId"}
        return vendor.data_transfer(p.get("messageId"), p.get("data"))

    def get_configuration(self, p, stale):
        config = self.cp.config
        keys = p.get("key")
        if not keys:
            keys = config.names()
        elif len(keys) > config.get("GetConfigurationMaxKeys"):
            raise CallError("OccurenceConstraintViolation",
                            "more than GetConfigurationMaxKeys keys")
        known = []
        unknown = []
        for k in keys:
            if config.has(k):
                known.append(config.wire(k))
            else:
                unknown.append(k)
        answer = {"configurationKey": known}
        if unknown:
            answer["unknownKey"] = unknown
        return answer

    def remote_start_transaction(self, p, stale):
        if stale:
            return self._stale()
        cp = self.cp
        cid = p.get("connectorId")
        profile = p.get("chargingProfile")
        if profile is not None and (profile["chargingProfilePurpose"] != "TxProfile"
                                    or cp.smartcharging is None
                                    or not cp.smartcharging.accepts(profile)):
            return _REJECTED
        id_tag = p["idTag"]
        # a connector a reservation holds for another idTag is refused; with an Authorize to
        # come, a parentIdTag not known yet is left for its answer to decide
        pending = cp.config.get("AuthorizeRemoteTxRequests")
        if cid is not None:
            c = cp.connector(cid)
            if c is None or not c.idle() or not cp.sessions.rank(c, id_tag, None, pending):
                return _REJECTED
        else:
            c = cp.sessions.free_connector(id_tag, pending)
            if c is None:
                return _REJECTED
        if pending:
            cp.sessions.authorize(c, id_tag, profile)
        else:
            cp.sessions.grant(c, id_tag, profile)
        return _ACCEPTED

    def remote_stop_transaction(self, p, stale):
        if stale:
            return self._stale()
        for c in self.cp.connectors:
            if c.tx is not None and c.tx["id"] == p["transactionId"]:
                self.cp.sessions.stop(c, "Remote")
                return _ACCEPTED
        return _REJECTED

    def reset(self, p, stale):
        if stale:
            return self._stale()
        self.cp.request_reset(p["type"] == "Hard", "Reset.req (%s)" % p["type"])
        return _ACCEPTED

    def trigger_message(self, p, stale):
        return {"status": self.cp.trigger_request(p["requestedMessage"], p.get("connectorId"))}

    def unlock_connector(self, p, stale):
        # Without a cable lock (tethered cable) there is nothing to do: the session goes on.
        cp = self.cp
        c = cp.connector(p["connectorId"])
        if c is None or c.hw.lock is None:
            return {"status": "NotSupported"}
        if stale:
            cp.stale_rejected += 1
            return {"status": "UnlockFailed"}
        if c.tx is not None:
            cp.sessions.stop(c, "UnlockCommand")  # stopped whether or not the lock then opens
        return {"status": "Unlocked" if c.hw.lock.unlock() else "UnlockFailed"}
