"""Steps of the wall clock by hours, forwards and backwards (a BootNotification's or a
Heartbeat's currentTime, NTP): timers run on ticks, the queue keeps its order and the times
its messages were taken, schedules and reservations follow the new wall time, a Relative
schedule goes on from where it was."""
from conftest import Rig

from chargepoint.ocpp.timestamps import iso, parse_iso

TAG = "04A1B2C3D4"
HOUR = 3600


def jump(r, seconds):
    """The Central System's clock and the charger's step by `seconds` (as a Heartbeat's
    currentTime sets it)."""
    was = r.cs.now
    r.cs.now = lambda: iso(parse_iso(was()) + seconds)
    r.cp.set_clock(r.cs.now(), "Heartbeat")
    r.step()


def charging(r):
    r.tap(TAG)
    r.ev("C")
    assert r.hw().relay.closed


def stamp_of(p):
    return parse_iso(p["meterValue"][0]["timestamp"])


def test_periodic_samples_and_heartbeats_keep_their_pace_and_queued_times_stay_as_taken():
    r = Rig()
    r.step()
    r.cp.config.change("MeterValueSampleInterval", "60")
    charging(r)
    r.transport.connected = False
    r.run(125)
    before = r.cp.clock.wall()
    jump(r, 3 * HOUR)
    r.run(120)
    jump(r, -5 * HOUR)
    r.run(120)
    r.transport.connected = True
    r.run(2)
    samples = r.payloads("MeterValues")
    assert len(samples) == 6  # one a minute of ticks, whatever the wall clock did
    stamps = [stamp_of(p) for p in samples]
    assert stamps[0] < stamps[1] <= before  # taken before the first step: as they were
    assert stamps[2] >= before + 3 * HOUR and stamps[4] < before - HOUR
    assert [p["transactionId"] for p in samples] == [101] * 6
    r.tap(TAG)
    r.ev("A")
    n = r.cs.counts.get("Heartbeat", 0)
    jump(r, 2 * HOUR)
    r.run(299)
    assert r.cs.counts.get("Heartbeat", 0) == n
    r.run(2)
    assert r.cs.counts.get("Heartbeat", 0) == n + 1  # HeartbeatInterval of ticks


def aligned(r):
    return [p for p in r.payloads("MeterValues")
            if p["meterValue"][0]["sampledValue"][0]["context"] == "Sample.Clock"]


def test_clock_aligned_samples_one_for_a_step_forwards_none_for_a_step_backwards():
    r = Rig()
    r.step()
    r.cp.config.change("MeterValueSampleInterval", "0")
    r.cp.config.change("ClockAlignedDataInterval", "900")
    charging(r)
    r.run(1800)
    assert len(aligned(r)) == 2
    jump(r, 3 * HOUR)  # boundaries skipped: one sample, of the boundary just passed
    assert len(aligned(r)) == 3 and stamp_of(aligned(r)[-1]) % 900 == 0
    jump(r, -5 * HOUR)
    wall = r.cp.clock.wall()
    r.run(900 - wall % 900 - 2)
    assert len(aligned(r)) == 3  # no boundary crossed yet in the new time
    r.run(4)
    assert len(aligned(r)) == 4 and stamp_of(aligned(r)[-1]) == (wall // 900 + 1) * 900


def test_a_relative_schedule_goes_on_from_where_it_was_across_steps_of_the_clock():
    r = Rig()
    r.step()
    profile = {"chargingProfileId": 3, "stackLevel": 0,
               "chargingProfilePurpose": "TxDefaultProfile", "chargingProfileKind": "Relative",
               "chargingSchedule": {"chargingRateUnit": "A", "chargingSchedulePeriod": [
                   {"startPeriod": 0, "limit": 8.0}, {"startPeriod": 600, "limit": 12.0}]}}
    assert r.send("SetChargingProfile", {"connectorId": 1, "csChargingProfiles": profile})[2] \
        == {"status": "Accepted"}
    charging(r)
    assert r.hw().pilot.amps == 8.0
    r.run(200)
    jump(r, -2 * HOUR)
    r.run(200)
    assert r.hw().pilot.amps == 8.0
    jump(r, 5 * HOUR)
    r.run(150)
    assert r.hw().pilot.amps == 8.0
    r.run(60)
    assert r.hw().pilot.amps == 12.0  # 600 s of charging, as the ticks count them


def reserve(r, expires_in):
    expiry = iso(r.cp.clock.wall() + expires_in)
    msg = r.send("ReserveNow", {"connectorId": 1, "expiryDate": expiry, "idTag": TAG,
                                "reservationId": 5})
    assert msg[2] == {"status": "Accepted"} and r.conn().status == "Reserved"


def test_a_reservation_expires_by_the_wall_time_it_was_given_in():
    r = Rig()
    r.step()
    reserve(r, 600)
    jump(r, -2 * HOUR)
    r.run(900)
    assert r.conn().status == "Reserved"  # its expiryDate is still two hours ahead
    jump(r, 3 * HOUR)
    r.step(1000)
    assert r.conn().status == "Available"
    assert r.statuses()[-2:] == ["Reserved", "Available"]
