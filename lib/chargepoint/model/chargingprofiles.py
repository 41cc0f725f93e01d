"""What the charging profiles do (chargepoint.model.smartcharging, the feature, holds them):
SetChargingProfile, ClearChargingProfile and GetCompositeSchedule answered, the profiles
checked, stored and loaded, and the limits computed from them. Imported by the feature for a
request and kept while a profile is installed; dropped when none is (the feature's _done()).
`sc` below is the feature."""
from chargepoint.model import schedule
from chargepoint.model.smartcharging import RECORD
from chargepoint.ocpp.timestamps import iso

_RATE_UNITS = ("Current", "Power")  # ChargingScheduleAllowedChargingRateUnit's, per unit


# -- SetChargingProfile, ClearChargingProfile ---------------------------------------------

def set_profile(sc, cid, wire):
    """SetChargingProfile.req for connector cid: Accepted or Rejected."""
    purpose = wire["chargingProfilePurpose"]
    ref = None
    connectors = sc.connectors
    if cid > len(connectors):
        return "Rejected"
    if purpose == "ChargePointMaxProfile":
        if cid != 0:
            return "Rejected"
    elif purpose == "TxProfile":
        # only for the transaction running on that connector (§3.13.1, §5.16.4)
        tx = connectors[cid - 1].tx if cid else None
        if tx is None:
            return "Rejected"
        txid = wire.get("transactionId")
        if txid is not None and txid != tx["id"]:
            return "Rejected"
        ref = tx["ref"]
    p = check(sc, wire, cid, ref)
    if p is None:
        return "Rejected"
    return _add(sc, p)


def _adopt(sc, c, wire, ref):
    # The chargingProfile of a RemoteStartTransaction.req as the TxProfile of connector c's
    # transaction `ref` (§5.16.2), also while the authorisation waits for the cable (ref "")
    # so that the first offer already follows it. True if installed.
    if wire.get("chargingProfilePurpose") != "TxProfile":
        return False
    p = check(sc, wire, c.id, ref)
    return p is not None and _add(sc, p) == "Accepted"


def clear(sc, pid=None, cid=None, purpose=None, stack=None):
    """ClearChargingProfile.req: by id alone, else every profile matching all the criteria
    given (none given: all). Accepted, or Unknown when none matched."""
    code = None if purpose is None else schedule.PURPOSES.index(purpose)
    keep = []
    for q in sc.profiles:
        if pid is not None:
            match = q[schedule.ID] == pid
        else:
            match = ((cid is None or q[schedule.CONNECTOR] == cid)
                     and (code is None or q[schedule.PURPOSE] == code)
                     and (stack is None or q[schedule.STACK] == stack))
        if not match:
            keep.append(q)
    if len(keep) == len(sc.profiles):
        return "Unknown"
    _replace(sc, keep)
    return "Accepted"


def check(sc, wire, cid, ref):
    """The compact profile of `wire` when within this charge point's limits and well formed,
    else None."""
    cfg = sc.config
    s = wire["chargingSchedule"]
    if (wire["stackLevel"] > cfg.get("ChargeProfileMaxStackLevel")
            or len(s["chargingSchedulePeriod"]) > cfg.get("ChargingScheduleMaxPeriods")
            or _RATE_UNITS[schedule.UNITS.index(s["chargingRateUnit"])]
            not in cfg.get("ChargingScheduleAllowedChargingRateUnit").split(",")):
        return None
    p = schedule.compact(wire, cid, ref)
    if p is None or (schedule.switches_phases(p)
                     and not cfg.get("ConnectorSwitch3to1PhaseSupported")):
        return None
    return p


def _add(sc, p):
    # The same id, or the same purpose and stack level on the same connector, is replaced
    # (§3.13.2, §5.16.3); the limit counts what is left after that.
    keep = []
    for q in sc.profiles:
        if q[schedule.ID] != p[schedule.ID] and (
                q[schedule.PURPOSE] != p[schedule.PURPOSE]
                or q[schedule.STACK] != p[schedule.STACK]
                or q[schedule.CONNECTOR] != p[schedule.CONNECTOR]):
            keep.append(q)
    if len(keep) >= sc.config.get("MaxChargingProfilesInstalled"):
        return "Rejected"
    keep.append(p)
    _replace(sc, keep)
    return "Accepted"


def _replace(sc, profiles):
    sc.profiles = tuple(profiles)
    sc.store.write(RECORD, sc.profiles)
    sc._dirty = True


def load(sc, records):
    """The stored profiles. The tuples came back from JSON as lists. A record that is not a
    profile (only a corrupted medium makes one) is left out, and so are TxProfiles: no
    transaction outlives a boot; what was left out goes from the record too."""
    profiles = []
    if isinstance(records, list):
        for r in records:
            if (isinstance(r, list) and len(r) == schedule.FIELDS
                    and r[schedule.PURPOSE] in (schedule.CPMAX, schedule.TXDEFAULT)
                    and isinstance(r[schedule.PERIODS], list) and r[schedule.PERIODS]
                    and len(r[schedule.PERIODS]) % 3 == 0):
                r[schedule.PERIODS] = tuple(r[schedule.PERIODS])
                profiles.append(tuple(r))
    sc.profiles = tuple(profiles)
    if not isinstance(records, list) or len(profiles) != len(records):
        sc.store.write(RECORD, sc.profiles)


# -- following the transactions -----------------------------------------------------------

def switch(sc, c, old, ref, wire):
    """Connector c follows transaction `ref` now, `old` before: old's TxProfiles go with it
    (§3.13.1), `wire` (the profile it was remotely started with, or None) comes in."""
    if old is not None:
        keep = [q for q in sc.profiles
                if q[schedule.REF] != old or q[schedule.CONNECTOR] != c.id]
        if len(keep) != len(sc.profiles):
            _replace(sc, keep)
    if wire is not None:
        _adopt(sc, c, wire, ref)


def _tx_start(sc, i, now):
    # The start of connector i's transaction (schedule time); with none, now: what a
    # transaction starting now would get, so the limit is in place when one starts.
    if not sc._ref[i]:
        return now
    return now - sc.clock.since(sc._ticks[i]) // 1000


def _share(sc, extra=0):
    n = extra
    for c in sc.connectors:
        if c.tx is not None:
            n += 1
    return n if n > 1 else 1


# -- the limits ---------------------------------------------------------------------------

def limits(sc):
    """Each connector's limit from the profiles, now (the feature's before())."""
    # offline after a power cut, the limits hold on the estimate of the wall time
    wall = sc.clock.estimate()
    now = None if wall is None else wall - schedule.EPOCH
    share = _share(sc)
    connectors = sc.connectors
    for i in range(len(connectors)):
        c = connectors[i]
        ma = _limit_ma(sc, i, c, now, share)
        if ma != sc._ma[i]:
            sc._ma[i] = ma
            c.limit = None if ma < 0 else ma / 1000


def limit_at(sc, c, now):
    """SmartCharging.limit_at()."""
    if now is not None:
        now -= schedule.EPOCH
    ma = _limit_ma(sc, c.id - 1, c, now, _share(sc))
    return None if ma < 0 else ma / 1000


def _limit_ma(sc, i, c, now, share):
    if now is None:  # time counted from the transaction's start, in ticks
        t = sc.clock.since(sc._ticks[i]) // 1000 if sc._ref[i] else 0
        return schedule.limit_ma(sc.profiles, c.id, t, 0, sc._ref[i], False, share)
    return schedule.limit_ma(sc.profiles, c.id, now, _tx_start(sc, i, now), sc._ref[i], True,
                             share)


# -- GetCompositeSchedule -----------------------------------------------------------------

def composite(sc, cid, duration, unit=None):
    """GetCompositeSchedule.conf for connector cid (0: the whole charge point) from now.
    Rejected for an unknown connector or while the wall clock is unknown."""
    wall = sc.clock.wall()
    connectors = sc.connectors
    if wall is None or cid > len(connectors):
        return {"status": "Rejected"}
    now = wall - schedule.EPOCH
    unit = unit or "A"
    if cid == 0:
        hw_ma = 0
        for c in connectors:
            hw_ma += int(c.hw.max_amps * 1000)
        start, ref, share = now, None, 1
    else:
        c = connectors[cid - 1]
        hw_ma = int(c.hw.max_amps * 1000)
        start = _tx_start(sc, cid - 1, now)
        ref = sc._ref[cid - 1]
        share = _share(sc, 0 if c.tx is not None else 1)
    periods, covered = schedule.composite(
        sc.profiles, cid, now, duration, schedule.UNITS.index(unit), start, ref, share,
        hw_ma, sc.config.get("ChargingScheduleMaxPeriods"))
    stamp = iso(wall)
    return {"status": "Accepted", "connectorId": cid, "scheduleStart": stamp,
            "chargingSchedule": {"duration": covered, "startSchedule": stamp,
                                 "chargingRateUnit": unit,
                                 "chargingSchedulePeriod": periods}}
