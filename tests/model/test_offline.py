"""Deep offline operation: hours of sessions with no Central System, power cuts in between, all
delivered once the link is back; the queue's bound; what the charger keeps enforcing offline."""
from conftest import Rig

from chargepoint.model.txqueue import MAX
from chargepoint.ocpp.timestamps import parse_iso

TAG = "04A1B2C3D4"


def offline_rig():
    r = Rig()
    r.step()
    cfg = r.cp.config
    cfg.change("AllowOfflineTxForUnknownId", "true")
    cfg.change("MeterValueSampleInterval", "300")
    cfg.change("ClockAlignedDataInterval", "900")
    r.transport.connected = False
    return r


def session(r, minutes, cut=False):
    """A card, the EV charging for `minutes` at 11 kW, then the card again and unplugged;
    cut=True: the power goes half way (the session ends at boot, PowerLoss)."""
    r.tap(TAG)
    r.ev("C")
    assert r.hw().relay.closed
    for half in (0, 1):
        for _ in range(minutes * 6 // 2):
            r.hw().meter.wh += 18  # 11 kW for 10 s
            r.step(10000)
        if cut and half == 0:
            r.power_cut()
            r.step()
            r.ev("A")
            return
    r.tap(TAG)
    r.ev("A")


def test_120_transactions_over_a_day_offline_with_power_cuts_all_delivered_once_in_order():
    r = offline_rig()
    for i in range(120):
        session(r, 10, cut=(i % 40 == 20))
        if i % 30 == 29:
            r.power_cut()  # between sessions: the clock is unknown until the link is back
            r.step()
        r.run(120, tick_ms=10000)
    queued = len(r.cp.txq)
    assert 500 < queued <= MAX and r.cp.txq.dropped == 0
    n = len(r.calls())
    r.transport.connected = True
    r.run(120)
    assert len(r.cp.txq) == 0
    sent = [(a, p) for a, p in r.calls()[n:]
            if a in ("StartTransaction", "StopTransaction", "MeterValues")
            and (a != "MeterValues" or "transactionId" in p)]
    assert len(sent) == queued
    starts = [p for a, p in sent if a == "StartTransaction"]
    stops = [p for a, p in sent if a == "StopTransaction"]
    assert len(starts) == len(stops) == 120
    assert [p["reason"] for p in stops].count("PowerLoss") == 3
    # each transaction's messages after its StartTransaction, with the id it was given, the
    # StopTransaction last; transaction after transaction, in the order they happened
    ids = [101 + i for i in range(120)]
    running = None
    order = []
    for a, p in sent:
        if a == "StartTransaction":
            assert running is None
            running = ids[len(order)]
            order.append(running)
        else:
            assert p["transactionId"] == running, (a, p)
            if a == "StopTransaction":
                running = None
    assert order == ids
    stamps = [parse_iso(p["timestamp"] if a != "MeterValues" else p["meterValue"][0]["timestamp"])
              for a, p in sent]
    assert stamps == sorted(stamps)  # never the delivery time: when each was taken
    assert stamps[-1] < r.cp.clock.wall() - 100
    periodic = [p for a, p in sent if a == "MeterValues"
                and p["meterValue"][0]["sampledValue"][0]["context"] == "Sample.Periodic"]
    aligned = [p for a, p in sent if a == "MeterValues"
               and p["meterValue"][0]["sampledValue"][0]["context"] == "Sample.Clock"]
    assert len(periodic) >= 2 * 117 and len(aligned) >= 60


def test_a_full_queue_sheds_the_meter_values_of_its_oldest_segment_never_the_front():
    from chargepoint.model.txqueue import TxQueue
    from chargepoint.platform.clock import Clock
    from tools.fakes import FakeTicks, MemoryStore

    store = MemoryStore()
    q = TxQueue(store, Clock(ticks_ms=FakeTicks()), None, lambda *a: None)
    q.push("s", "StartTransaction", {"timestamp": "t"}, "1.1")
    for i in range(MAX - 1):
        q.push("m%d" % i, "MeterValues", {"meterValue": []}, "1.1")
    assert len(q) == MAX and q.room()
    segments = store.names("q.")
    assert 10 < len(segments) < 30  # dozens of messages to a segment, not one each
    q.push("e", "StopTransaction", {"timestamp": "t"}, "1.1")
    gone = q.dropped
    assert gone > 10 and len(q) == MAX - gone + 1
    kept = [r["u"] for _, r in q.records()]
    assert kept[:2] == ["s", "m%d" % gone] and kept[-1] == "e"  # the oldest went
    q = TxQueue(store, Clock(ticks_ms=FakeTicks()), None, lambda *a: None)  # a power cut
    assert [r["u"] for _, r in q.records()] == kept and len(q) == len(kept)


def test_no_session_starts_without_room_for_its_start_and_stop():
    r = offline_rig()
    r.cp.config.change("MeterValueSampleInterval", "0")
    q = r.cp.txq
    for i in range(MAX // 2 - 1):
        q.push("s%d" % i, "StartTransaction", {"timestamp": "t"}, "9.%d" % i)
        q.push("e%d" % i, "StopTransaction", {"timestamp": "t"}, "9.%d" % i)
    assert q.room()
    session(r, 1)  # the last pair that fits
    assert len(q) == MAX and not q.room()
    r.tap(TAG)
    r.ev("C")
    r.step(1000)
    assert not r.hw().relay.closed and r.conn().tx is None  # nothing charges unrecorded
    assert len(q) == MAX
    scans = []
    scan = r.store.scan
    r.store.scan = lambda *a, **k: scans.append(a) or scan(*a, **k)
    q.push("m", "MeterValues", {"meterValue": []}, None)
    assert len(q) == MAX and q.dropped == 1 and scans == []  # no segment read for it


def test_a_charger_restarting_again_and_again_offline_never_stamps_ahead_of_the_time():
    r = offline_rig()
    r.run(600)
    for _ in range(12):  # restarts 30 s apart, the clock unknown after each
        r.power_cut()
        r.step()
        r.run(30)
    real = parse_iso(r.cs.now())
    r.tap(TAG)
    r.ev("C")
    r.run(60)
    r.tap(TAG)
    r.power_cut()  # its start resolved from that boot's estimate, not the clock learned after
    r.step()
    r.transport.connected = True
    r.run(5)
    start = parse_iso(r.payloads("StartTransaction")[0]["timestamp"])
    assert real - 12 * 60 <= start <= real + 1  # behind by the saves it missed, never ahead


def start_stamps(r, n=0):
    return [parse_iso(p["timestamp"]) for p in r.payloads("StartTransaction")[n:]]


def test_sessions_across_more_restarts_than_boots_kept_carry_when_they_started_in_order():
    # 40 boots offline, a session in each: more boots than the wall record keeps entries for
    # (32), so the oldest markers are resolved from the estimate written into them
    r = offline_rig()
    r.run(600)
    for _ in range(40):
        session(r, 1)
        r.run(60)
        r.power_cut()
        r.step()
    r.run(60)
    r.transport.connected = True
    r.run(120)
    stamps = start_stamps(r)
    assert len(stamps) == 40 and stamps == sorted(stamps) and len(set(stamps)) == 40
    assert stamps[0] < r.cp.clock.wall() - 40 * 120  # never the delivery time


def test_a_boot_offline_after_a_message_answered_stamps_nothing_earlier_than_it():
    # online with the clock set: a transaction delivered 50 s after the wall time was last
    # kept, then a power cut and a boot offline: its estimate starts from that message, not
    # from the wall time kept before it
    r = Rig()
    r.step()
    r.run(65)  # the wall time kept once
    r.run(50)
    r.tap(TAG)
    r.ev("C")
    r.run(1)
    r.tap(TAG)
    r.ev("A")
    r.run(1)
    assert len(r.cp.txq) == 0
    stop = parse_iso(r.payloads("StopTransaction")[0]["timestamp"])
    r.transport.connected = False
    r.power_cut()  # before the wall time is kept again
    r.step()
    session(r, 1)
    r.power_cut()  # that boot never learns the time: its start is sent with its estimate
    r.step()
    r.transport.connected = True
    r.run(30)
    assert start_stamps(r)[1] > stop


def offline_unknown_card_charging(max_energy):
    """An unknown card charging offline (AllowOfflineTxForUnknownId) 300 Wh, then the link
    back and its StartTransaction answered Invalid, StopTransactionOnInvalidId false."""
    r = offline_rig()
    cfg = r.cp.config
    cfg.change("StopTransactionOnInvalidId", "false")
    cfg.change("MaxEnergyOnInvalidId", str(max_energy))
    r.cs.authorized = set()
    r.hw().meter.wh = 1000
    r.tap("DEADBEEF")
    r.ev("C")
    assert r.hw().relay.closed
    r.hw().meter.wh = 1300
    r.transport.connected = True
    r.run(2)
    assert r.payloads("StartTransaction")[0]["idTag"] == "DEADBEEF"
    return r


def test_an_id_found_invalid_after_an_offline_start_charges_up_to_max_energy_on_invalid_id():
    r = offline_unknown_card_charging(500)
    assert r.hw().relay.closed and r.conn().status == "Charging"  # 300 of 500 Wh
    r.hw().meter.wh = 1499
    r.step(1000)
    assert r.hw().relay.closed
    r.hw().meter.wh = 1500  # 500 Wh since the start: energy stops, the transaction stays
    r.step(20)
    assert not r.hw().relay.closed and r.conn().status == "SuspendedEVSE"
    r.power_cut()  # and stays stopped across a power cut: that session ends (PowerLoss)
    r.step()
    r.ev("A")
    assert [p["reason"] for p in r.payloads("StopTransaction")] == ["PowerLoss"]


def test_an_id_found_invalid_stops_energy_at_once_without_max_energy_on_invalid_id():
    r = offline_unknown_card_charging(0)
    assert not r.hw().relay.closed and r.conn().status == "SuspendedEVSE"
    assert r.conn().tx is not None


def test_charging_limits_hold_offline_and_across_a_power_cut():
    r = Rig()
    r.step()
    profile = {"chargingProfileId": 7, "stackLevel": 0,
               "chargingProfilePurpose": "TxDefaultProfile", "chargingProfileKind": "Absolute",
               "chargingSchedule": {"chargingRateUnit": "A", "startSchedule": r.cs.now(),
                                    "chargingSchedulePeriod": [{"startPeriod": 0,
                                                                "limit": 10.0}]}}
    assert r.send("SetChargingProfile", {"connectorId": 0, "csChargingProfiles": profile})[2] \
        == {"status": "Accepted"}
    r.cp.config.change("AllowOfflineTxForUnknownId", "true")
    r.transport.connected = False
    r.run(3600, tick_ms=60000)
    r.power_cut()  # the clock unknown, offline: the profile from the flash, on the estimate
    r.step()
    assert not r.cp.clock.is_set()
    r.tap(TAG)
    r.ev("C")
    r.step(1000)
    assert r.hw().relay.closed and r.hw().pilot.amps == 10.0
