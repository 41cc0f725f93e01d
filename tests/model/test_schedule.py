"""The composite-schedule arithmetic (OCPP 1.6 §3.13, §5.16, §7.13) on profile tuples."""
from chargepoint.model import schedule as s

DAY = 86400
T = s.seconds("2026-11-21T12:00:00Z")  # a Saturday
MIDNIGHT = T - 12 * 3600


def wire(pid=1, purpose="TxDefaultProfile", periods=((0, 10),), stack=0, kind="Absolute",
         unit="A", **extra):
    sched = {"chargingRateUnit": unit, "chargingSchedulePeriod": [
        dict(zip(("startPeriod", "limit", "numberPhases"), p)) for p in periods]}
    profile = {"chargingProfileId": pid, "stackLevel": stack, "chargingProfilePurpose": purpose,
               "chargingProfileKind": kind, "chargingSchedule": sched}
    for key, value in extra.items():
        in_schedule = key in ("startSchedule", "duration", "minChargingRate")
        (sched if in_schedule else profile)[key] = value
    return profile


def make(cid=1, ref=None, **kw):
    p = s.compact(wire(**kw), cid, ref)
    assert p is not None
    return p


SPEC = dict(pid=100, kind="Recurring", recurrencyKind="Daily", unit="W", duration=86400,
            startSchedule="2013-01-01T00:00:00Z",
            periods=((0, 11000, 3), (28800, 6000, 3), (72000, 11000, 3)))


def test_the_spec_example_compacts_to_tenths_and_phases():
    # OCPP 1.6 §3.13.7: a daily default profile limiting to 6 kW between 08:00 and 20:00
    p = make(**SPEC)
    # the recurrence anchored after EPOCH, in the same place of the day
    assert p == (100, 1, s.TXDEFAULT, 0, 1, DAY, None, None, 0, 86400, s.W, None,
                 (0, 110000, 3, 28800, 60000, 3, 72000, 110000, 3), None)


def test_times_count_from_2024_and_an_earlier_recurrence_is_anchored_after_it():
    # unix seconds are past MicroPython's small integers: the arithmetic would allocate
    assert s.seconds("2024-01-01T00:00:00Z") == 0
    assert s.seconds("2026-11-21T12:00:00+01:00") == T - 3600
    assert s.seconds(None) is None
    weekly = make(kind="Recurring", recurrencyKind="Weekly", startSchedule="2023-12-25T06:00:00Z")
    assert weekly[s.START] == 6 * 3600  # Monday 06:00 either way
    assert s.period(weekly, MIDNIGHT + 2 * DAY + 6 * 3600, None) == 0  # Monday 23 Nov


def test_the_spec_example_limits_by_time_of_day():
    p = make(**SPEC)
    assert s.period(p, MIDNIGHT + 7 * 3600 + 3599, None) == 0
    assert s.period(p, MIDNIGHT + 8 * 3600, None) == 3
    assert s.period(p, MIDNIGHT + 20 * 3600, None) == 6
    i = s.period(p, T, None)
    assert s.milliamps(p, p[s.PERIODS][i + 1], i) == 8695  # 6000 W / (230 V x 3)
    assert s.next_change(p, T, None) == MIDNIGHT + 20 * 3600
    assert s.next_change(p, MIDNIGHT + 20 * 3600, None) == MIDNIGHT + DAY  # the recurrence


def test_watts_use_the_period_phases_and_three_when_absent():
    p = make(unit="W", periods=((0, 2300, 1), (10, 6900)))
    assert s.milliamps(p, p[s.PERIODS][1], 0) == 10000
    assert s.milliamps(p, p[s.PERIODS][4], 3) == 10000
    assert s.switches_phases(p)
    assert not s.switches_phases(make(periods=((0, 6, 3), (10, 8))))


def test_limits_are_kept_in_tenths():
    p = make(periods=((0, 8.1), (60, 0.7)))
    assert p[s.PERIODS] == (0, 81, 0, 60, 7, 0)
    assert s.milliamps(p, 81, 0) == 8100


def test_rules_of_the_schedule_reject_the_profile():
    assert s.compact(wire(periods=((10, 6),)), 1) is None  # the first period starts at 0
    assert s.compact(wire(periods=((0, 6), (60, 8), (60, 9))), 1) is None  # increasing
    assert s.compact(wire(periods=((0, -1),)), 1) is None
    assert s.compact(wire(periods=()), 1) is None
    assert s.compact(wire(periods=((0, 6, 4),)), 1) is None
    assert s.compact(wire(kind="Recurring", recurrencyKind="Daily"), 1) is None  # no start
    assert s.compact(wire(kind="Recurring", startSchedule="2026-01-01T00:00:00Z"), 1) is None
    assert s.compact(wire(validFrom="2026-01-02T00:00:00Z", validTo="2026-01-01T00:00:00Z"),
                     1) is None


def test_absolute_schedule_starts_at_start_schedule_and_ends_with_its_duration():
    p = make(startSchedule="2026-11-21T12:00:00Z", duration=300, periods=((0, 6), (100, 8)))
    assert s.period(p, T - 1, None) == -1
    assert s.next_change(p, T - 1, None) == T
    assert s.period(p, T + 99, None) == 0
    assert s.period(p, T + 100, None) == 3
    assert s.next_change(p, T + 100, None) == T + 300
    assert s.period(p, T + 300, None) == -1
    assert s.next_change(p, T + 300, None) is None


def test_periods_beyond_the_duration_are_not_executed():
    p = make(startSchedule="2026-11-21T12:00:00Z", duration=50, periods=((0, 6), (100, 8)))
    assert s.next_change(p, T, None) == T + 50
    assert s.period(p, T + 60, None) == -1


def test_relative_and_absolute_without_start_count_from_the_transaction():
    for kind in ("Relative", "Absolute"):
        p = make(kind=kind, periods=((0, 6), (120, 16)))
        assert s.period(p, T, None) == -1  # no transaction: no start
        assert s.period(p, T + 119, T) == 0
        assert s.period(p, T + 120, T) == 3
        assert not s.needs_wall(p)
    relative_with_start = make(kind="Relative", startSchedule="2020-01-01T00:00:00Z")
    assert relative_with_start[s.START] is None


def test_recurring_weekly_and_beyond_the_recurrence():
    # Saturdays 0 A for a day, then 16 A; a period past a week is never reached
    p = make(kind="Recurring", recurrencyKind="Weekly", startSchedule="2026-11-14T00:00:00Z",
             periods=((0, 0), (DAY, 16), (8 * DAY, 6)))
    assert s.period(p, T, None) == 0
    assert s.period(p, MIDNIGHT + DAY, None) == 3
    assert s.period(p, MIDNIGHT + 6 * DAY + 3600, None) == 3
    assert s.period(p, MIDNIGHT + 7 * DAY, None) == 0
    assert s.next_change(p, MIDNIGHT + DAY, None) == MIDNIGHT + 7 * DAY
    assert s.period(p, MIDNIGHT - 7 * DAY - 1, None) == -1  # before startSchedule


def test_validity_bounds_the_profile():
    p = make(validFrom="2026-11-21T12:00:00Z", validTo="2026-11-21T13:00:00Z")
    assert s.needs_wall(p)
    assert s.period(p, T - 1, None) == -1
    assert s.next_change(p, T - 1, None) == T
    assert s.period(p, T, T) == 0  # without startSchedule: from the transaction's start
    assert s.next_change(p, T, T) == T + 3600
    assert s.period(p, T + 3600, T) == -1


def test_highest_stack_level_with_a_limit_prevails():
    low = make(pid=1, stack=0, periods=((0, 6),))
    high = make(pid=2, stack=3, startSchedule="2026-11-21T12:00:00Z", duration=60,
                periods=((0, 10),))
    profiles = (high, low)
    assert s.prevailing(profiles, s.TXDEFAULT, 1, T + 59, T, None) is high
    assert s.prevailing(profiles, s.TXDEFAULT, 1, T + 60, T, None) is low
    assert s.prevailing(profiles, s.TX, 1, T, T, None) is None


def test_connector_zero_default_applies_unless_the_connector_has_its_own_at_that_level():
    everywhere = make(cid=0, pid=1, stack=1, periods=((0, 8),))
    own = make(cid=2, pid=2, stack=1, periods=((0, 12),))
    lower = make(cid=2, pid=3, stack=0, periods=((0, 6),))
    profiles = (everywhere, own, lower)
    assert s.prevailing(profiles, s.TXDEFAULT, 1, T, T, None) is everywhere
    assert s.prevailing(profiles, s.TXDEFAULT, 2, T, T, None) is own
    assert s.prevailing((everywhere, lower), s.TXDEFAULT, 2, T, T, None) is everywhere


def test_tx_profile_only_for_its_transaction():
    tx = make(purpose="TxProfile", ref="1.1", periods=((0, 7),))
    assert s.prevailing((tx,), s.TX, 1, T, T, "1.1") is tx
    assert s.prevailing((tx,), s.TX, 1, T, T, "1.2") is None
    assert s.prevailing((tx,), s.TX, 2, T, T, "1.1") is None


def test_composite_limit_is_the_minimum_of_the_purposes():
    default = make(pid=1, periods=((0, 16),))
    tx = make(pid=2, purpose="TxProfile", ref="r", periods=((0, 12), (60, 4)))
    cap = make(pid=3, cid=0, purpose="ChargePointMaxProfile", periods=((0, 10),))
    profiles = (default, tx, cap)
    assert s.limit_ma(profiles, 1, T, T, "r") == 10000  # TxProfile 12 A, capped at 10 A
    assert s.limit_ma(profiles, 1, T + 60, T, "r") == 4000
    assert s.limit_ma(profiles, 1, T, T, None) == 10000  # no transaction: default, capped
    assert s.limit_ma(profiles, 1, T, T, "r", share=2) == 5000
    assert s.limit_ma((), 1, T, T, None) == -1


def test_below_min_charging_rate_nothing_is_offered():
    default = make(pid=1, periods=((0, 16),), minChargingRate=10)
    cap = make(pid=3, cid=0, purpose="ChargePointMaxProfile", periods=((0, 8), (60, 12)))
    assert s.limit_ma((default, cap), 1, T, T, None) == 0
    assert s.limit_ma((default, cap), 1, T + 60, T, None) == 12000


def test_without_wall_time_calendar_profiles_are_left_out():
    relative = make(pid=1, kind="Relative", periods=((0, 8), (120, 12)))
    dated = make(pid=2, cid=0, purpose="ChargePointMaxProfile",
                 startSchedule="2026-01-01T00:00:00Z", periods=((0, 6),))
    assert s.limit_ma((relative, dated), 1, 0, 0, None, wall=False) == 8000
    assert s.limit_ma((relative, dated), 1, 120, 0, None, wall=False) == 12000
    assert s.limit_ma((relative, dated), 1, T, T, None) == 6000


def test_composite_merges_equal_periods_and_reports_in_the_unit_asked_for():
    p = make(**SPEC)
    periods, covered = s.composite((p,), 1, T, DAY, s.W, T, None, 1, 16000, 24)
    assert covered == DAY
    assert periods == [{"startPeriod": 0, "limit": 6000.0, "numberPhases": 3},
                       {"startPeriod": 8 * 3600, "limit": 11000.0, "numberPhases": 3},
                       {"startPeriod": 20 * 3600, "limit": 6000.0, "numberPhases": 3}]
    periods, _ = s.composite((p,), 1, T, DAY, s.A, T, None, 1, 16000, 24)
    assert [x["limit"] for x in periods] == [8.6, 15.9, 8.6]  # rounded down to 0.1 A


def test_composite_falls_back_to_the_hardware_and_stops_at_max_periods():
    p = make(startSchedule="2026-11-21T12:00:00Z", duration=300,
             periods=((0, 6), (100, 8), (200, 10)))
    periods, covered = s.composite((p,), 1, T, 400, s.A, T, None, 1, 16000, 24)
    assert covered == 400
    assert [(x["startPeriod"], x["limit"]) for x in periods] == \
        [(0, 6.0), (100, 8.0), (200, 10.0), (300, 16.0)]
    periods, covered = s.composite((p,), 1, T, 400, s.A, T, None, 1, 16000, 2)
    assert covered == 200 and len(periods) == 2
    periods, _ = s.composite((p,), 1, T, 400, s.W, T, None, 1, 16000, 24)
    assert [x["limit"] for x in periods] == [4140.0, 5520.0, 6900.0, 11040.0]


def test_composite_of_the_charge_point_is_its_max_profile():
    cap = make(cid=0, pid=3, purpose="ChargePointMaxProfile", unit="W",
               periods=((0, 11000), (600, 40000)))
    tx = make(pid=2, purpose="TxProfile", ref="r", periods=((0, 6),))
    periods, _ = s.composite((cap, tx), 0, T, 1200, s.W, T, None, 1, 32000, 24)
    assert periods == [{"startPeriod": 0, "limit": 11000.0},
                       {"startPeriod": 600, "limit": 22080.0}]  # two 16 A connectors
