"""The Smart Charging profile (OCPP 1.6 §3.13, §5.5, §5.7, §5.16): charging profiles set,
cleared and persisted, their composite limit driven onto each connector, GetCompositeSchedule.

A feature (`cp.smartcharging`) whose `before()` runs every loop step, before the safety step:
the limit goes to `Connector.limit` (amps per phase, None for none); the sessions offer
min(max_amps, limit) on the pilot and withdraw it below 6 A.

Choices where the specification leaves room:
- A connector's limit is its prevailing TxProfile, else TxDefaultProfile, capped by the
  ChargePointMaxProfile; that cap is shared equally between the connectors running a
  transaction, since it bounds the charge point as a whole (§3.13.3).
- Below the schedule's minChargingRate nothing is offered (limit 0): the EV charges
  inefficiently or not at all there (§3.13.4), and offering more would break the limit.
- Without wall time (offline since power-up) only profiles not placed in calendar time apply:
  Relative ones (or Absolute without startSchedule) without validFrom/validTo, counted from
  the transaction's start in clock ticks. A profile that needs the date is left out until
  the clock is set, rather than guessed.
- The profiles live in one store record, rewritten whole on each change. TxProfiles end
  with their transaction (§7.10), so a boot drops them.
"""
from micropython import const

from chargepoint.model import Feature, schedule
from chargepoint.model.connector import AUTH_PROFILE
from chargepoint.ocpp.config import BOOL, CSL, INT, RO
from chargepoint.ocpp.timestamps import iso, parse_iso

_RECORD = "chargingprofiles"
_MAX_STACK = const(8)
_MAX_PERIODS = const(24)
_MAX_PROFILES = const(10)
_EVERY_MS = const(1000)  # the limits are computed again at least this often

_RATE_UNITS = ("Current", "Power")  # ChargingScheduleAllowedChargingRateUnit's, per unit


class SmartCharging(Feature):
    name = "smartcharging"
    profile = "SmartCharging"
    routes = ("SetChargingProfile", "ClearChargingProfile", "GetCompositeSchedule")
    # (all literals: a constant tuple, kept in flash, not in the heap)
    keys = (("ChargeProfileMaxStackLevel", INT, _MAX_STACK, RO),
            ("ChargingScheduleAllowedChargingRateUnit", CSL, "Current,Power", RO),
            ("ChargingScheduleMaxPeriods", INT, _MAX_PERIODS, RO),
            ("ConnectorSwitch3to1PhaseSupported", BOOL, False, RO),
            ("MaxChargingProfilesInstalled", INT, _MAX_PROFILES, RO))

    def __init__(self, cp, services):
        self.store = cp.store
        self.clock = cp.clock
        self.config = cp.config
        self.connectors = cp.connectors
        records = self.store.read(_RECORD, [])
        self.profiles = _load(records)
        if not isinstance(records, list) or len(self.profiles) != len(records):
            self._save()
        n = len(self.connectors)
        # per connector: the transaction followed (its ref; "" a remote start waiting for the
        # cable), its start in ticks (a step of the wall clock does not move it: a Relative
        # schedule goes on from where it was), and the limit last applied in mA (-1 none,
        # None not yet)
        self._ref = [None] * n
        self._ticks = [0] * n
        self._ma = [None] * n
        self._at = 0  # ticks the limits were last computed
        self._dirty = True  # a transaction or a profile changed since

    # A stale request (from the broker's backlog) is carried out: a profile only bounds
    # charging, and a TxProfile is checked against the running transaction either way.

    def set_charging_profile(self, p, stale):
        return {"status": self.set_profile(p["connectorId"], p["csChargingProfiles"])}

    def clear_charging_profile(self, p, stale):
        return {"status": self.clear(p.get("id"), p.get("connectorId"),
                                     p.get("chargingProfilePurpose"), p.get("stackLevel"))}

    def get_composite_schedule(self, p, stale):
        return self.composite(p["connectorId"], p["duration"], p.get("chargingRateUnit"))

    # -- SetChargingProfile, ClearChargingProfile -----------------------------------------

    def set_profile(self, cid, wire):
        """SetChargingProfile.req for connector cid: Accepted or Rejected."""
        self._follow()
        purpose = wire["chargingProfilePurpose"]
        ref = None
        if cid > len(self.connectors):
            return "Rejected"
        if purpose == "ChargePointMaxProfile":
            if cid != 0:
                return "Rejected"
        elif purpose == "TxProfile":
            # only for the transaction running on that connector (§3.13.1, §5.16.4)
            tx = self.connectors[cid - 1].tx if cid else None
            if tx is None:
                return "Rejected"
            txid = wire.get("transactionId")
            if txid is not None and txid != tx["id"]:
                return "Rejected"
            ref = tx["ref"]
        p = self._check(wire, cid, ref)
        if p is None:
            return "Rejected"
        return self._add(p)

    def accepts(self, wire):
        """Whether a chargingProfile (e.g. of a RemoteStartTransaction.req) is within this
        charge point's limits and well formed."""
        return self._check(wire, 1, None) is not None

    def adopt(self, c, wire):
        """The chargingProfile of a RemoteStartTransaction.req as the TxProfile of connector
        c's new transaction (§5.16.2). True if installed. apply() does this by itself when
        the transaction record carries it (`tx["profile"]`), and while the authorisation
        waits for the cable (`c.auth`) so that the first offer already follows it."""
        return c.tx is not None and self._adopt(c, wire, c.tx["ref"])

    def _adopt(self, c, wire, ref):
        if wire.get("chargingProfilePurpose") != "TxProfile":
            return False
        p = self._check(wire, c.id, ref)
        return p is not None and self._add(p) == "Accepted"

    def clear(self, pid=None, cid=None, purpose=None, stack=None):
        """ClearChargingProfile.req: by id alone, else every profile matching all the
        criteria given (none given: all). Accepted, or Unknown when none matched."""
        self._follow()
        code = None if purpose is None else schedule.PURPOSES.index(purpose)
        keep = []
        for q in self.profiles:
            if pid is not None:
                match = q[schedule.ID] == pid
            else:
                match = ((cid is None or q[schedule.CONNECTOR] == cid)
                         and (code is None or q[schedule.PURPOSE] == code)
                         and (stack is None or q[schedule.STACK] == stack))
            if not match:
                keep.append(q)
        if len(keep) == len(self.profiles):
            return "Unknown"
        self._replace(keep)
        return "Accepted"

    def _check(self, wire, cid, ref):
        cfg = self.config
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

    def _add(self, p):
        # The same id, or the same purpose and stack level on the same connector, is
        # replaced (§3.13.2, §5.16.3); the limit counts what is left after that.
        keep = []
        for q in self.profiles:
            if q[schedule.ID] != p[schedule.ID] and (
                    q[schedule.PURPOSE] != p[schedule.PURPOSE]
                    or q[schedule.STACK] != p[schedule.STACK]
                    or q[schedule.CONNECTOR] != p[schedule.CONNECTOR]):
                keep.append(q)
        if len(keep) >= self.config.get("MaxChargingProfilesInstalled"):
            return "Rejected"
        keep.append(p)
        self._replace(keep)
        return "Accepted"

    def _replace(self, profiles):
        self.profiles = tuple(profiles)
        self._save()
        self._dirty = True

    def _save(self):
        self.store.write(_RECORD, self.profiles)

    # -- following the transactions -------------------------------------------------------

    def _follow(self):
        # A transaction started or ended since the last look: its TxProfiles go with it
        # (§3.13.1), a profile it was remotely started with comes in. A remote start waiting
        # for the cable follows the pseudo-transaction "" with its profile.
        connectors = self.connectors
        for i in range(len(connectors)):
            c = connectors[i]
            tx = c.tx
            if tx is not None:
                ref = tx["ref"]
            else:
                auth = c.auth
                ref = "" if auth is not None and auth[AUTH_PROFILE] is not None else None
            if ref != self._ref[i]:
                self._switch(i, c, ref)

    def _switch(self, i, c, ref):
        old = self._ref[i]
        if old is not None:
            keep = [q for q in self.profiles
                    if q[schedule.REF] != old or q[schedule.CONNECTOR] != c.id]
            if len(keep) != len(self.profiles):
                self._replace(keep)
        self._ref[i] = ref
        self._dirty = True
        if not ref:
            if ref == "":
                self._adopt(c, c.auth[AUTH_PROFILE], "")
            return
        stamp = c.tx["ts"]
        clock = self.clock
        if stamp[:1] == "@":  # "@<boot>:<ticks>": started before the wall clock was known
            self._ticks[i] = int(stamp.partition(":")[2])
        else:
            wall = clock.estimate()
            self._ticks[i] = clock.after(((parse_iso(stamp) - wall) if wall is not None else 0)
                                         * 1000)
        profile = c.tx.get("profile")
        if profile is not None:
            self._adopt(c, profile, ref)

    def _tx_start(self, i, c, now):
        # The start of connector i's transaction (schedule time); with none, now: what a
        # transaction starting now would get, so the limit is in place when one starts.
        if not self._ref[i]:
            return now
        return now - self.clock.since(self._ticks[i]) // 1000

    def _share(self, extra=0):
        n = extra
        for c in self.connectors:
            if c.tx is not None:
                n += 1
        return n if n > 1 else 1

    # -- the limits -----------------------------------------------------------------------

    def before(self):
        """Every loop step, before the safety step: sets each connector's limit from the profiles, now. The
        arithmetic runs once a second, and at once when a transaction or a profile changed,
        so a period takes effect within a second of its start."""
        self._follow()
        clock = self.clock
        if not self._dirty and clock.since(self._at) < _EVERY_MS:
            return
        self._at = clock.ticks_ms()
        self._dirty = False
        # offline after a power cut, the limits hold on the estimate of the wall time
        wall = clock.estimate()
        now = None if wall is None else wall - schedule.EPOCH
        share = self._share()
        connectors = self.connectors
        for i in range(len(connectors)):
            c = connectors[i]
            ma = self._limit_ma(i, c, now, share)
            if ma != self._ma[i]:
                self._ma[i] = ma
                c.limit = None if ma < 0 else ma / 1000

    def limit_at(self, c, now):
        """Amps per phase connector c may draw at `now` (unix seconds; None: wall time
        unknown), or None for no limit."""
        self._follow()
        if now is not None:
            now -= schedule.EPOCH
        ma = self._limit_ma(c.id - 1, c, now, self._share())
        return None if ma < 0 else ma / 1000

    def _limit_ma(self, i, c, now, share):
        if now is None:  # time counted from the transaction's start, in ticks
            t = self.clock.since(self._ticks[i]) // 1000 if self._ref[i] else 0
            return schedule.limit_ma(self.profiles, c.id, t, 0, self._ref[i], False, share)
        return schedule.limit_ma(self.profiles, c.id, now, self._tx_start(i, c, now),
                                 self._ref[i], True, share)

    # -- GetCompositeSchedule -------------------------------------------------------------

    def composite(self, cid, duration, unit=None):
        """GetCompositeSchedule.conf for connector cid (0: the whole charge point) from now.
        Rejected for an unknown connector or while the wall clock is unknown."""
        self._follow()
        wall = self.clock.wall()
        connectors = self.connectors
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
            start = self._tx_start(cid - 1, c, now)
            ref = self._ref[cid - 1]
            share = self._share(0 if c.tx is not None else 1)
        periods, covered = schedule.composite(
            self.profiles, cid, now, duration, schedule.UNITS.index(unit), start, ref, share,
            hw_ma, self.config.get("ChargingScheduleMaxPeriods"))
        stamp = iso(wall)
        return {"status": "Accepted", "connectorId": cid, "scheduleStart": stamp,
                "chargingSchedule": {"duration": covered, "startSchedule": stamp,
                                     "chargingRateUnit": unit,
                                     "chargingSchedulePeriod": periods}}


def _load(records):
    # The stored tuples came back from JSON as lists. A record that is not a profile (only a
    # corrupted medium makes one) is left out, and so are TxProfiles: no transaction outlives
    # a boot.
    profiles = []
    if not isinstance(records, list):
        return ()
    for r in records:
        if (isinstance(r, list) and len(r) == schedule.FIELDS
                and r[schedule.PURPOSE] in (schedule.CPMAX, schedule.TXDEFAULT)
                and isinstance(r[schedule.PERIODS], list) and r[schedule.PERIODS]
                and len(r[schedule.PERIODS]) % 3 == 0):
            r[schedule.PERIODS] = tuple(r[schedule.PERIODS])
            profiles.append(tuple(r))
    return tuple(profiles)
