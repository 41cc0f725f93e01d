"""The Smart Charging profile (OCPP 1.6 §3.13, §5.5, §5.7, §5.16): charging profiles set,
cleared and persisted, their composite limit driven onto each connector, GetCompositeSchedule.

A feature (`cp.smartcharging`) whose `before()` runs every loop step, before the safety step:
the limit goes to `Connector.limit` (amps per phase, None for none); the sessions offer
min(max_amps, limit) on the pilot and withdraw it below 6 A. What stays resident is the
feature's state (the profiles, the transactions followed) and the following of the
transactions; the requests and the arithmetic of the limits (chargepoint.model.
chargingprofiles, with chargepoint.model.schedule) are imported for a request, and stay while
a profile is installed: without one there is no limit to compute, and they are dropped.

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

from chargepoint.model import Feature, unload
from chargepoint.model.connector import AUTH_PROFILE
from chargepoint.ocpp.config import BOOL, CSL, INT, RO
from chargepoint.ocpp.timestamps import parse_iso

RECORD = "chargingprofiles"
_MAX_STACK = const(8)
_MAX_PERIODS = const(24)
_MAX_PROFILES = const(10)
_EVERY_MS = const(1000)  # the limits are computed again at least this often


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
        self.rules = None  # chargepoint.model.chargingprofiles while it is needed
        self.profiles = ()  # (schedule.compact() tuples)
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
        records = self.store.read(RECORD, [])
        if records != []:  # profiles to load (or a damaged record to mend)
            self._rules().load(self, records)
            self._done()

    def _rules(self):
        if self.rules is None:
            from chargepoint.model import chargingprofiles

            self.rules = chargingprofiles
        return self.rules

    def _done(self):
        """With no profile installed there is no limit to compute: the rules go."""
        if not self.profiles and self.rules is not None:
            self.rules = None
            unload("chargepoint.model", "chargingprofiles")
            unload("chargepoint.model", "schedule")

    # A stale request (from the broker's backlog) is carried out: a profile only bounds
    # charging, and a TxProfile is checked against the running transaction either way.

    def set_charging_profile(self, p, stale):
        self._follow()
        try:
            return {"status": self._rules().set_profile(self, p["connectorId"],
                                                        p["csChargingProfiles"])}
        finally:
            self._done()

    def clear_charging_profile(self, p, stale):
        self._follow()
        try:
            return {"status": self._rules().clear(self, p.get("id"), p.get("connectorId"),
                                                  p.get("chargingProfilePurpose"),
                                                  p.get("stackLevel"))}
        finally:
            self._done()

    def get_composite_schedule(self, p, stale):
        self._follow()
        try:
            return self._rules().composite(self, p["connectorId"], p["duration"],
                                           p.get("chargingRateUnit"))
        finally:
            self._done()

    def accepts(self, wire):
        """Whether a chargingProfile (e.g. of a RemoteStartTransaction.req) is within this
        charge point's limits and well formed."""
        try:
            return self._rules().check(self, wire, 1, None) is not None
        finally:
            self._done()

    def limit_at(self, c, now):
        """Amps per phase connector c may draw at `now` (unix seconds; None: wall time
        unknown), or None for no limit."""
        self._follow()
        if not self.profiles:
            return None
        return self._rules().limit_at(self, c, now)

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
        self._ref[i] = ref
        self._dirty = True
        if ref:
            stamp = c.tx["ts"]
            clock = self.clock
            if stamp[:1] == "@":  # "@<boot>:<ticks>[:<estimate>]": before the clock was known
                self._ticks[i] = int(stamp.split(":")[1])
            else:
                wall = clock.estimate()
                self._ticks[i] = clock.after(((parse_iso(stamp) - wall) if wall is not None
                                              else 0) * 1000)
            wire = c.tx.get("profile")
        else:
            wire = c.auth[AUTH_PROFILE] if ref == "" else None
        if wire is not None or (old is not None and self.profiles):
            self._rules().switch(self, c, old, ref, wire)
            self._done()

    # -- the limits -----------------------------------------------------------------------

    def before(self):
        """Every loop step, before the safety step: sets each connector's limit from the
        profiles, now. The arithmetic runs once a second, and at once when a transaction or
        a profile changed, so a period takes effect within a second of its start; with no
        profile installed, every limit is none."""
        self._follow()
        if not self._dirty and self.clock.since(self._at) < _EVERY_MS:
            return
        self._at = self.clock.ticks_ms()
        self._dirty = False
        if self.rules is not None:
            self.rules.limits(self)
            return
        ma = self._ma
        for i in range(len(ma)):
            if ma[i] != -1:
                ma[i] = -1
                self.connectors[i].limit = None
