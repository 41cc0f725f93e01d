"""Central System initiated operations: the Core profile and TriggerMessage (Remote Trigger).

Stale rule: a CALL the transport flags as stale (delivered from the broker's backlog of a
persistent session right after a reconnect, so possibly queued for a long time) is answered
but an actuating one (RemoteStart/Stop, Reset, UnlockConnector, ChangeAvailability) is
answered Rejected/UnlockFailed without acting: the operator's intent may be long gone.
Reads and configuration changes are carried out.
"""
from chargepoint.model import metering
from chargepoint.ocpp.errors import CallError

_ACCEPTED = {"status": "Accepted"}
_REJECTED = {"status": "Rejected"}


def install(cp):
    r = cp.engine.route
    r("ChangeAvailability", lambda p, s: change_availability(cp, p, s))
    r("ChangeConfiguration", lambda p, s: change_configuration(cp, p))
    r("ClearCache", lambda p, s: clear_cache(cp))
    r("DataTransfer", lambda p, s: data_transfer(cp, p))
    r("GetConfiguration", lambda p, s: get_configuration(cp, p))
    r("RemoteStartTransaction", lambda p, s: remote_start(cp, p, s))
    r("RemoteStopTransaction", lambda p, s: remote_stop(cp, p, s))
    r("Reset", lambda p, s: reset(cp, p, s))
    r("TriggerMessage", lambda p, s: trigger_message(cp, p))
    r("UnlockConnector", lambda p, s: unlock_connector(cp, p, s))


def _stale(cp):
    cp.stale_rejected += 1
    return _REJECTED


def change_availability(cp, p, stale):
    cid = p["connectorId"]
    operative = p["type"] == "Operative"
    if stale:
        return _stale(cp)
    if cid == 0:
        targets = cp.connectors
    else:
        c = cp.connector(cid)
        if c is None:
            return _REJECTED
        targets = [c]
    busy = [c for c in targets if c.tx is not None]
    if not busy:
        cp.set_operative(0 if cid == 0 else targets[0], operative)
        return _ACCEPTED
    for c in busy:  # the busy ones change after their transaction, the idle ones now
        c.scheduled = operative
    if cid == 0:
        cp.scheduled0 = operative
    for c in targets:
        if c.tx is None:
            cp.set_operative(c, operative)
    cp.schedule_availability()
    return {"status": "Scheduled"}


def change_configuration(cp, p):
    return {"status": cp.config.change(p["key"], p["value"])}


def clear_cache(cp):
    if not cp.config.get("AuthorizationCacheEnabled"):
        return _REJECTED
    cp.cache.clear()
    return _ACCEPTED


def data_transfer(cp, p):
    handler = cp.vendor_data.get(p["vendorId"])
    if handler is None:
        return {"status": "UnknownVendorId"}
    return handler(p.get("messageId"), p.get("data"))


def get_configuration(cp, p):
    config = cp.config
    keys = p.get("key")
    if not keys:
        keys = config.names()
    elif len(keys) > config.get("GetConfigurationMaxKeys"):
        raise CallError("OccurenceConstraintViolation", "more than GetConfigurationMaxKeys keys")
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


def remote_start(cp, p, stale):
    if stale:
        return _stale(cp)
    cid = p.get("connectorId")
    profile = p.get("chargingProfile")
    if profile is not None and (profile["chargingProfilePurpose"] != "TxProfile"
                                or not cp.smartcharging.accepts(profile)):
        return _REJECTED
    id_tag = p["idTag"]
    # a connector a reservation holds for another idTag is refused; with an Authorize to
    # come, a parentIdTag not known yet is left for its answer to decide
    pending = cp.config.get("AuthorizeRemoteTxRequests")
    if cid is not None:
        c = cp.connector(cid)
        if c is None or not c.idle() or not cp.reservations.rank(c, id_tag, None, pending):
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


def remote_stop(cp, p, stale):
    if stale:
        return _stale(cp)
    for c in cp.connectors:
        if c.tx is not None and c.tx["id"] == p["transactionId"]:
            cp.sessions.stop(c, "Remote")
            return _ACCEPTED
    return _REJECTED


def reset(cp, p, stale):
    if stale:
        return _stale(cp)
    cp.security.why = "Reset.req (%s)" % p["type"]  # techInfo of the ResetOrReboot event
    cp.request_reset(p["type"] == "Hard")
    return _ACCEPTED


def trigger_message(cp, p):
    what = p["requestedMessage"]
    cid = p.get("connectorId")
    if cid is not None and cid != 0 and cp.connector(cid) is None:
        return _REJECTED
    if what == "BootNotification":
        cp.trigger_boot()
    elif what == "Heartbeat":
        cp.send_heartbeat()
    elif what == "StatusNotification":
        ids = [cid] if cid is not None else [0] + [c.id for c in cp.connectors]
        for i in ids:
            status = cp.status_call(i)
            cp.call(status.action, status.payload, status.done, status.fail)
    elif what == "MeterValues":
        targets = [cp.connector(cid)] if cid else cp.connectors
        measurands = cp.config.get("MeterValuesSampledData")
        for c in targets:
            payload = {"connectorId": c.id,
                       "meterValue": [metering.sample(c, measurands, "Trigger", cp.clock.stamp())]}
            if c.tx is not None and c.tx["id"] is not None:
                payload["transactionId"] = c.tx["id"]
            cp.call("MeterValues", payload)
    elif what == "DiagnosticsStatusNotification":
        cp.call(what, {"status": cp.diagnostics.state()})  # Uploading, else Idle
    elif what == "FirmwareStatusNotification":
        cp.call(what, {"status": cp.firmware.current() if cp.firmware else "Idle"})
    return _ACCEPTED


def unlock_connector(cp, p, stale):
    # Without a cable lock (tethered cable) there is nothing to do: the session goes on.
    c = cp.connector(p["connectorId"])
    if c is None or c.hw.lock is None:
        return {"status": "NotSupported"}
    if stale:
        cp.stale_rejected += 1
        return {"status": "UnlockFailed"}
    if c.tx is not None:
        cp.sessions.stop(c, "UnlockCommand")  # stopped whether or not the lock then opens
    return {"status": "Unlocked" if c.hw.lock.unlock() else "UnlockFailed"}
