"""Transaction messages: persistent ordered queue, retries, transactionId fix-up, power loss,
meter values and the rewrite of timestamps taken before the clock was set."""
import json

from conftest import Rig

TAG = "04A1B2C3D4"


def charging(rig, tag=TAG):
    rig.tap(tag)
    rig.ev("C")
    assert rig.hw().relay.closed
    return rig.conn().tx


def test_periodic_meter_values_carry_transaction_id(rig):
    rig.send("ChangeConfiguration", {"key": "MeterValuesSampledData",
                                     "value": "Energy.Active.Import.Register,Power.Active.Import,"
                                              "Current.Import,Voltage,Current.Offered"})
    charging(rig)
    rig.hw().meter.wh = 100
    rig.hw().meter.watts = 3680.0
    rig.hw().meter.amps = (16.0,)
    rig.run(60)
    mv = rig.payloads("MeterValues")
    assert len(mv) == 1 and mv[0]["transactionId"] == 101
    values = {(s["measurand"], s.get("phase")): s["value"] for s in mv[0]["meterValue"][0]["sampledValue"]}
    assert values == {("Energy.Active.Import.Register", None): "100",
                      ("Power.Active.Import", None): "3680.0",
                      ("Current.Import", "L1"): "16.0", ("Voltage", "L1-N"): "230.0",
                      ("Current.Offered", None): "16.0"}
    rig.run(60)
    assert len(rig.payloads("MeterValues")) == 2


def test_clock_aligned_meter_values(rig):
    rig.send("ChangeConfiguration", {"key": "ClockAlignedDataInterval", "value": "900"})
    rig.run(898)  # the clock reads 12:00:01 after boot; 12:15:00 is the next boundary
    assert rig.payloads("MeterValues") == []
    rig.run(2)
    mv = rig.payloads("MeterValues")
    assert len(mv) == 1 and "transactionId" not in mv[0]
    assert mv[0]["meterValue"][0]["timestamp"] == "2026-11-21T12:15:00Z"
    assert mv[0]["meterValue"][0]["sampledValue"][0]["context"] == "Sample.Clock"



def test_offline_transaction_messages_in_order_with_fixed_up_id():
    r = Rig()
    r.step()
    r.cp.config.change("AllowOfflineTxForUnknownId", "true")
    r.transport.connected = False
    r.tap(TAG)
    r.ev("C")
    r.hw().meter.wh = 50
    r.run(60)
    r.hw().meter.wh = 90
    r.run(60)
    r.tap(TAG)
    assert len(r.cp.txq) == 4
    n = len(r.calls())
    r.transport.connected = True
    r.run(2)
    sent = [(a, p) for a, p in r.calls()[n:] if a != "StatusNotification"]
    assert [a for a, _ in sent] == ["StartTransaction", "MeterValues", "MeterValues",
                                    "StopTransaction"]
    txid = 101
    assert all(p["transactionId"] == txid for _, p in sent[1:])
    assert len(r.cp.txq) == 0


def test_a_full_flash_sheds_meter_values_never_a_start_or_stop_and_says_so_once():
    r = Rig()
    r.step()
    r.cp.config.change("AllowOfflineTxForUnknownId", "true")
    r.transport.connected = False
    r.store.full = True  # every write refused (ENOSPC)
    r.tap(TAG)
    r.ev("C")
    for wh in (50, 90, 130):
        r.hw().meter.wh = wh
        r.run(60)
    r.tap(TAG)  # stop
    # the Start and the Stop wait in the RAM; no MeterValues found room on the flash
    assert [rec["a"] for _, rec in r.cp.txq.records()] == ["StartTransaction",
                                                          "StopTransaction"]
    assert r.cp.txq.dropped == 3 and not r.store.names("q.")
    r.store.full = False
    n = len(r.calls())
    r.transport.connected = True
    r.run(2)
    sent = [(a, p) for a, p in r.calls()[n:] if a not in ("StatusNotification", "Heartbeat")]
    events = [p["type"] for a, p in sent if a == "SecurityEventNotification"]
    assert events.count("StorageWriteFailed") == 1  # once for the whole spell
    assert [a for a, _ in sent if a != "SecurityEventNotification"] == [
        "StartTransaction", "StopTransaction"]
    assert [p for a, p in sent if a == "StopTransaction"][0]["transactionId"] == 101
    assert len(r.cp.txq) == 0


def test_a_full_flash_sheds_the_oldest_meter_values_to_keep_a_stop():
    from chargepoint.model.txqueue import TxQueue
    from tools.fakes import FakeTicks, MemoryStore
    from chargepoint.platform.clock import Clock

    class Flash(MemoryStore):  # full until a file goes
        def remove(self, name):
            if self.files.pop(name, None) is not None:
                self.full = False

    store = Flash()
    q = TxQueue(store, Clock(ticks_ms=FakeTicks()), None, lambda *a: None)
    q.push("1", "StartTransaction", {"timestamp": "t"}, "1.1")
    i = 0
    while len(store.names("q.")) < 3:  # a segment of the Start and MeterValues, two of these
        q.push("m%d" % i, "MeterValues", {"meterValue": []}, "1.1")
        i += 1
    first, second, third = store.names("q.")
    in_second = len(list(store.scan(second)))
    store.full = True  # no room to write the first segment again without its MeterValues
    q.push("2", "StopTransaction", {"timestamp": "t"}, "1.1")
    assert q.dropped == in_second and second not in store.files  # removed whole, the oldest
    assert [r["u"] for _, r in q.records()][-2:] == ["m%d" % (i - 1), "2"]
    assert not q._held  # the Stop is on the flash, not held in the RAM
    assert [r["u"] for r, _ in store.scan(third)][-1] == "2"


def test_callerror_retried_then_dropped_after_attempts():
    r = Rig()
    r.step()
    r.send("ChangeConfiguration", {"key": "TransactionMessageRetryInterval", "value": "10"})
    r.cs.answers["StartTransaction"] = ("InternalError", "database down")
    r.tap(TAG)
    r.ev("C")
    assert len(r.payloads("StartTransaction")) == 1
    r.step(9999)
    assert len(r.payloads("StartTransaction")) == 1
    r.step(1)  # retry after interval x 1
    assert len(r.payloads("StartTransaction")) == 2
    r.step(19999)
    assert len(r.payloads("StartTransaction")) == 2
    r.step(1)  # retry after interval x 2, the third and last attempt
    assert len(r.payloads("StartTransaction")) == 3
    r.run(600)
    assert len(r.payloads("StartTransaction")) == 3
    assert len(r.cp.txq) == 0 and r.payloads("MeterValues") == []
    # the session goes on locally; its stop cannot be sent without a transactionId
    r.tap(TAG)
    r.run(5)
    assert r.payloads("StopTransaction") == [] and len(r.cp.txq) == 0


def test_timeout_is_not_an_attempt():
    r = Rig()
    r.step()
    r.cs.answers["StartTransaction"] = None
    r.tap(TAG)
    r.ev("C")
    for _ in range(6):
        r.run(90)
    assert len(r.cp.txq) >= 1
    starts = r.payloads("StartTransaction")
    assert len(starts) >= 4 and r.cp.txq.dropped == 0
    uids = {m[1] for m in r.frames if m[0] == 2 and m[2] == "StartTransaction"}
    assert len(uids) == 1  # the same message id each time: the CSMS can de-duplicate
    r.cs.answers.pop("StartTransaction")
    r.run(300)
    assert len(r.cp.txq) == 0 and r.conn().tx["id"] == 101


def test_power_loss_during_transaction_stops_with_power_loss():
    r = Rig()
    r.step()
    charging(r)
    r.hw().meter.wh = 700
    r.run(61)  # the record keeps the latest energy
    r.hw().meter.wh = 800
    r.power_cut()
    assert not r.hw().relay.closed
    r.hw().pilot.ev = "A"
    r.step()
    stops = r.payloads("StopTransaction")
    assert len(stops) == 1
    assert stops[0]["reason"] == "PowerLoss" and stops[0]["meterStop"] == 800
    assert stops[0]["transactionId"] == 101
    # the Transaction.Begin sample came back from the flash: the heap never held it
    assert [d["sampledValue"][0]["context"] for d in stops[0]["transactionData"]] == \
        ["Transaction.Begin", "Transaction.End"]
    assert stops[0]["transactionData"][0]["sampledValue"][0]["value"] == "0"
    assert r.cp.store.read("txb1") is None and r.cp.store.read("tx1") is None
    r.power_cut()
    r.step()
    assert len(r.payloads("StopTransaction")) == 1  # never twice
    assert len(r.payloads("StartTransaction")) == 1


def test_power_loss_before_start_was_sent():
    r = Rig()
    r.step()
    r.transport.connected = False
    r.cp.config.change("AllowOfflineTxForUnknownId", "true")
    r.tap(TAG)
    r.ev("C")
    r.hw().meter.wh = 30
    r.power_cut()
    r.transport.connected = True
    r.step()
    r.step()
    assert [a for a, _ in r.calls() if a in ("StartTransaction", "StopTransaction")] == \
        ["StartTransaction", "StopTransaction"]
    assert r.payloads("StopTransaction")[0]["transactionId"] == 101


def test_power_cut_between_stop_queued_and_record_removed():
    r = Rig()
    r.step()
    tx = charging(r)
    r.transport.connected = False
    # the moment between: the stop is queued but the record is still there
    r.cp.sessions.queue_stop(tx, 10, r.cp.clock.stamp(), "Local")
    r.store.write("tx1", tx)
    r.power_cut()
    r.transport.connected = True
    r.step()
    assert len(r.payloads("StopTransaction")) == 1


def test_power_cut_after_start_answered_before_pop():
    r = Rig()
    r.step()
    r.cs.answers["StartTransaction"] = None
    r.tap(TAG)
    r.ev("C")
    # the answer arrives and the id is written, but the power goes before the pop
    ref = r.conn().tx["ref"]
    r.cp.txq.txids[ref] = 555
    r.store.write("txids", r.cp.txq.txids)
    r.power_cut()
    r.cs.answers.pop("StartTransaction")
    r.step()
    assert len(r.payloads("StartTransaction")) == 1
    assert r.payloads("StopTransaction")[0]["transactionId"] == 555


def test_timestamps_before_clock_set_are_rewritten():
    r = Rig(online=False)
    r.cp.config.change("AllowOfflineTxForUnknownId", "true")
    r.tap(TAG)  # the clock has never been set: no Central System yet
    r.ev("C")
    assert r.conn().tx["ts"].startswith("@")
    r.ticks.advance(30000)
    r.transport.connected = True
    r.step()
    start = r.payloads("StartTransaction")[0]
    # Boot answered at t=31 s (T0+31 s); the tap was 30 s earlier
    assert start["timestamp"] == "2026-11-21T12:00:01Z"


def test_queue_survives_power_cut_while_offline():
    r = Rig()
    r.step()
    charging(r)
    r.transport.connected = False
    r.run(180)
    r.tap(TAG)
    queued = len(r.cp.txq)
    assert queued == 4  # 3 MeterValues and the StopTransaction
    r.power_cut()
    assert len(r.cp.txq) == queued
    r.transport.connected = True
    r.step()
    assert len(r.payloads("MeterValues")) == 3
    assert len(r.payloads("StopTransaction")) == 1


def test_status_notifications_after_reconnect_show_latest(rig):
    rig.transport.connected = False
    rig.ev("B")
    rig.ev("A")
    rig.ev("B")
    n = len(rig.statuses())
    rig.transport.connected = True
    rig.step()
    assert rig.statuses()[n:] == ["Preparing"]


def test_offline_sessions_across_power_cuts_carry_when_they_started_not_when_sent():
    """The clock is unknown after each power cut (no Central System): each boot stamps from
    the wall time last kept on flash, never the delivery time, in order."""
    from chargepoint.ocpp.timestamps import parse_iso

    r = Rig()
    r.step()
    assert r.cp.clock.is_set()
    r.cp.config.change("AllowOfflineTxForUnknownId", "true")
    r.transport.connected = False
    r.run(600)  # ten minutes offline: the wall time is kept every minute
    cut_at = r.cp.clock.wall()
    for session in range(3):
        r.power_cut()
        r.step()
        assert not r.cp.clock.is_set()
        r.run(120)
        r.tap(TAG)
        r.ev("C")
        r.run(300)
        r.tap(TAG)
        r.ev("A")
        r.run(120)
    r.run(600)
    r.transport.connected = True
    r.run(5)
    sent = [(a, parse_iso(p["timestamp"])) for a, p in r.calls()
            if a in ("StartTransaction", "StopTransaction")]
    assert [a for a, _ in sent] == ["StartTransaction", "StopTransaction"] * 3
    stamps = [t for _, t in sent]
    now = r.cp.clock.wall()
    assert stamps == sorted(stamps) and stamps[0] > cut_at and stamps[-1] < now - 300
    # each start an estimate, never ahead of when it really was and at most a minute per
    # boot without the time behind it (session i started 120 + 540 i s after the first cut)
    for i, (_, t) in enumerate(sent[::2]):
        assert -60 * (i + 1) - 5 <= t - (cut_at + 120 + 540 * i) <= 1, (i, t - cut_at)


def test_a_damaged_boot_record_never_brings_back_a_boot_number_used_before():
    r = Rig()
    r.step()
    r.power_cut()
    r.step()
    assert r.cp.boot == 2
    r.files.pop("boot")  # damaged, set aside, no copy before it
    r.power_cut()
    assert r.cp.boot == 3  # the wall record knows boot 2
