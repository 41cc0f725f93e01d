"""Charging profiles as compact tuples, and the arithmetic of OCPP 1.6 §3.13 on them.

Pure functions of (profiles, time): which profile prevails, the limit it sets, when that may
change, and the composite of the purposes. Times are integer seconds since EPOCH (2024-01-01
UTC), or since the transaction started when the wall clock is unknown: a unix time is past
MicroPython's small integers (2**30 on the ESP32) and every sum of one would allocate. Limits
are kept in tenths of the profile's unit and compared in milliamps per phase
(W / (230 V x numberPhases), three phases when the period names none): small integers
throughout, so the per-step limit allocates nothing (a float is a heap object there too).

A profile is a tuple indexed by the constants below; its periods a flat tuple of
(startPeriod, limit in tenths, numberPhases or 0) triples. `ref` ties a TxProfile to the
transaction record (`tx["ref"]`) it was installed for.
"""
from micropython import const

from chargepoint.ocpp.timestamps import parse_iso

ID = const(0)
CONNECTOR = const(1)
PURPOSE = const(2)  # CPMAX, TXDEFAULT or TX
STACK = const(3)
KIND = const(4)  # index in KINDS (informative: START and RECUR say how it behaves)
RECUR = const(5)  # seconds of the recurrence (Recurring), else 0
FROM = const(6)  # validFrom (seconds since EPOCH), or None
TO = const(7)  # validTo, or None
START = const(8)  # startSchedule, or None: relative to the start of the transaction
DURATION = const(9)  # seconds, or None: the last period goes on
UNIT = const(10)  # A or W
MIN_RATE = const(11)  # minChargingRate in tenths of UNIT, or None
PERIODS = const(12)
REF = const(13)  # the transaction a TxProfile belongs to, else None
FIELDS = const(14)

CPMAX = const(0)
TXDEFAULT = const(1)
TX = const(2)
A = const(0)
W = const(1)
_RECURRING = const(1)  # in KINDS
_RELATIVE = const(2)

PURPOSES = ("ChargePointMaxProfile", "TxDefaultProfile", "TxProfile")
KINDS = ("Absolute", "Recurring", "Relative")
UNITS = ("A", "W")
_RECURRENCE = {"Daily": 86400, "Weekly": 604800}
_VOLTS = const(230)  # nominal line voltage of the W -> A conversion (OCPP 1.6 §7.12)
_PHASES = const(3)  # numberPhases when a period gives none (§7.14)
EPOCH = 1704067200  # 2024-01-01T00:00:00Z in unix seconds: small integers until 2058


def seconds(text):
    """An OCPP dateTime as seconds since EPOCH, or None when absent or malformed."""
    unix = parse_iso(text)
    return None if unix is None else unix - EPOCH


def compact(p, cid, ref=None):
    """A wire ChargingProfile (already checked against the PDU rules) for connector `cid` ->
    a profile tuple, or None when its content breaks a rule of OCPP 1.6 §5.16/§7.13: periods
    not starting at 0 or not increasing, a negative limit, more than 3 phases, a Recurring
    profile without recurrencyKind or startSchedule, validTo not after validFrom."""
    s = p["chargingSchedule"]
    periods = []
    last = -1
    for period in s["chargingSchedulePeriod"]:
        start = period["startPeriod"]
        limit = period["limit"]
        phases = period.get("numberPhases", 0)
        if start <= last or (last < 0 and start != 0) or limit < 0 or phases > 3:
            return None
        periods.append(start)
        periods.append(int(round(limit * 10)))
        periods.append(phases)
        last = start
    if not periods:
        return None
    kind = KINDS.index(p["chargingProfileKind"])
    start = seconds(s.get("startSchedule"))  # None when absent
    recur = 0
    if kind == _RECURRING:  # the schedule restarts every day or week from startSchedule
        recur = _RECURRENCE.get(p.get("recurrencyKind"))
        if recur is None or start is None:
            return None
        if start < 0:  # the same recurrence, anchored after EPOCH (the spec's is in 2013)
            start %= recur
    elif kind == _RELATIVE:
        start = None  # Relative: from the start of the transaction, whatever it says
    valid_from = seconds(p.get("validFrom"))
    valid_to = seconds(p.get("validTo"))
    if valid_from is not None and valid_to is not None and valid_to <= valid_from:
        return None
    rate = s.get("minChargingRate")
    return (p["chargingProfileId"], cid, PURPOSES.index(p["chargingProfilePurpose"]),
            p["stackLevel"], kind, recur, valid_from, valid_to, start,
            s.get("duration") or None,  # 0 as no duration, as most charge points read it
            UNITS.index(s["chargingRateUnit"]), None if rate is None else int(round(rate * 10)),
            tuple(periods), ref)


def switches_phases(p):
    """True if the schedule changes numberPhases between periods."""
    periods = p[PERIODS]
    first = periods[2] or _PHASES
    for i in range(5, len(periods), 3):
        if (periods[i] or _PHASES) != first:
            return True
    return False


def needs_wall(p):
    """A profile placed in calendar time: it cannot apply while the wall clock is unknown."""
    return p[START] is not None or p[FROM] is not None or p[TO] is not None


def _basis(p, t, start):
    # The instant p's period offsets count from at t, or None while p sets no limit at t:
    # outside validFrom..validTo, not started yet, or past its duration. `start` is the
    # transaction's start, the origin of a relative schedule (None: no transaction).
    valid = p[FROM]
    if valid is not None and t < valid:
        return None
    valid = p[TO]
    if valid is not None and t >= valid:
        return None
    b = p[START]
    if b is None:
        b = start
        if b is None:
            return None
    if t < b:
        return None
    recur = p[RECUR]
    if recur:
        b = t - (t - b) % recur  # periods past the recurrence are never reached (§5.16.4)
    d = p[DURATION]
    if d is not None and t - b >= d:
        return None
    return b


def period(p, t, start):
    """Index in p[PERIODS] of the period in force at t, or -1 when p sets no limit then."""
    b = _basis(p, t, start)
    if b is None:
        return -1
    offset = t - b
    periods = p[PERIODS]
    i = len(periods) - 3
    while periods[i] > offset:  # the first period starts at 0, so this stops
        i -= 3
    return i


def milliamps(p, value, i):
    """`value` (tenths of p's unit) as milliamps per phase, with the phases of period i."""
    if p[UNIT] == A:
        return value * 100
    return value * 100 // (_VOLTS * (p[PERIODS][i + 2] or _PHASES))


def _earliest(a, b):
    if a is None:
        return b
    if b is None or a < b:
        return a
    return b


def next_change(p, t, start):
    """The first instant after t at which p's limit may change (a period, its duration, the
    recurrence or its validity begins or ends), or None if it never will."""
    valid_to = p[TO]
    if valid_to is not None and t >= valid_to:
        return None
    valid = p[FROM]
    if valid is not None and t < valid:
        return valid
    s = p[START]
    if s is None:
        s = start
        if s is None:
            return valid_to
    if t < s:
        return _earliest(s, valid_to)
    recur = p[RECUR]
    b = t - (t - s) % recur if recur else s
    offset = t - b
    d = p[DURATION]
    nxt = None
    if d is None or offset < d:
        periods = p[PERIODS]
        for i in range(0, len(periods), 3):
            if periods[i] > offset:
                nxt = b + periods[i]
                break
        if d is not None:
            nxt = _earliest(nxt, b + d)
    if recur:
        nxt = _earliest(nxt, b + recur)
    return _earliest(nxt, valid_to)


def _shadowed(profiles, stack, cid):
    # A TxDefaultProfile of connector cid replaces, for that connector only, the one of
    # connector 0 at the same stack level (§3.13.1).
    for q in profiles:
        if q[PURPOSE] == TXDEFAULT and q[CONNECTOR] == cid and q[STACK] == stack:
            return True
    return False


def prevailing(profiles, purpose, cid, t, start, ref, wall=True):
    """The profile of `purpose` that sets connector cid's limit at t: the highest stack level
    among those with a limit then (§3.13.2), or None. TxProfiles count only for transaction
    `ref`; TxDefaultProfiles of connector 0 count for every connector. Without `wall` (wall
    clock unknown, t and start counted from the transaction's start) profiles placed in
    calendar time are left out."""
    best = None
    for p in profiles:
        if p[PURPOSE] != purpose or (best is not None and p[STACK] <= best[STACK]):
            continue
        c = p[CONNECTOR]
        if purpose == TX:
            if c != cid or p[REF] != ref:
                continue
        elif purpose == TXDEFAULT:
            if c != cid and (c != 0 or _shadowed(profiles, p[STACK], cid)):
                continue
        if not wall and needs_wall(p):
            continue
        if period(p, t, start) >= 0:
            best = p
    return best


def limit_ma(profiles, cid, t, start, ref, wall=True, share=1):
    """Connector cid's composite limit at t in milliamps per phase, -1 for none (§3.13.3):
    the TxProfile (else the TxDefaultProfile) that prevails, capped by the prevailing
    ChargePointMaxProfile divided by `share` (the connectors drawing from it). Below the
    schedule's minChargingRate the EV charges inefficiently or not at all: 0 instead.
    Allocates nothing."""
    lim = -1
    i = -1
    p = prevailing(profiles, TX, cid, t, start, ref, wall)
    if p is None:
        p = prevailing(profiles, TXDEFAULT, cid, t, start, ref, wall)
    if p is not None:
        i = period(p, t, start)
        lim = milliamps(p, p[PERIODS][i + 1], i)
    q = prevailing(profiles, CPMAX, 0, t, start, None, wall)
    if q is not None:
        j = period(q, t, start)
        m = milliamps(q, q[PERIODS][j + 1], j) // share
        if lim < 0 or m < lim:
            lim = m
    if p is not None and p[MIN_RATE] is not None and lim < milliamps(p, p[MIN_RATE], i):
        lim = 0
    return lim


def _composite_at(profiles, cid, t, start, ref, share, hw_ma, unit):
    # (limit in tenths of `unit`, numberPhases or 0) of the composite at t. The winner's own
    # figure is reported when it is in the unit asked for, so a schedule reads back as sent.
    best = None
    best_ma = hw_ma
    bi = 0
    divided = False
    p = None
    i = 0
    if cid:
        p = prevailing(profiles, TX, cid, t, start, ref)
        if p is None:
            p = prevailing(profiles, TXDEFAULT, cid, t, start, ref)
        if p is not None:
            i = period(p, t, start)
            m = milliamps(p, p[PERIODS][i + 1], i)
            if m <= best_ma:
                best, best_ma, bi = p, m, i
    q = prevailing(profiles, CPMAX, 0, t, start, None)
    if q is not None:
        j = period(q, t, start)
        m = milliamps(q, q[PERIODS][j + 1], j) // share
        if m < best_ma:
            best, best_ma, bi, divided = q, m, j, share > 1
    phases = 0 if best is None else best[PERIODS][bi + 2]
    if p is not None and p[MIN_RATE] is not None and best_ma < milliamps(p, p[MIN_RATE], i):
        return 0, phases
    if best is not None and best[UNIT] == unit and not divided:
        return best[PERIODS][bi + 1], phases
    if unit == A:
        return best_ma // 100, phases
    return best_ma * _VOLTS * (phases or _PHASES) // 100, phases


def composite(profiles, cid, t0, duration, unit, start, ref, share, hw_ma, max_periods):
    """The composite schedule of connector cid (0: the charge point, ChargePointMaxProfile
    only) from t0 for `duration` seconds, limits in `unit`, for GetCompositeSchedule (§5.7).
    Where no profile limits, the hardware does: `hw_ma` milliamps per phase. Returns the
    ChargingSchedulePeriod list and the seconds it covers: less than `duration` when more
    than `max_periods` periods would be needed."""
    out = []
    last = None
    t = t0
    end = t0 + duration
    while True:
        here = _composite_at(profiles, cid, t, start, ref, share, hw_ma, unit)
        if here != last:
            if len(out) == max_periods:
                return out, t - t0
            entry = {"startPeriod": t - t0, "limit": here[0] / 10}
            if here[1]:
                entry["numberPhases"] = here[1]
            out.append(entry)
            last = here
        nxt = None
        for p in profiles:  # a superset of the profiles that matter: equal periods merge
            nxt = _earliest(nxt, next_change(p, t, start))
        if nxt is None or nxt >= end:
            return out, duration
        t = nxt
