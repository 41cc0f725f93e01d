"""End to end on the twin at an ESP32's heap (frozen placement): the Smart Charging and Local
Auth List Management profiles through Mosquitto, the real firmware and its drivers (issue 11)."""
import datetime
import http.server
import threading

import pytest

from test_e2e import TAG, T, online, run, start_charging, world  # noqa: F401  (fixture)
from tools import certs

pytestmark = pytest.mark.usefixtures("twins")


def tx_default(limit, pid=1):
    return {"chargingProfileId": pid, "stackLevel": 0,
            "chargingProfilePurpose": "TxDefaultProfile", "chargingProfileKind": "Relative",
            "chargingSchedule": {"chargingRateUnit": "A",
                                 "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}]}}


def test_session_follows_a_tx_default_profile_on_the_pilot(world):  # noqa: F811
    _, _, make_sim, make_csms = world

    async def scenario():
        async with make_csms() as cs:
            sim = make_sim()
            cp = await online(sim, cs)
            await start_charging(sim, cs, cp, 32.0)
            s = await sim.until(lambda s: s["connectors"]["1"]["relay"])
            assert s["connectors"]["1"]["pilot_amps"] == 32.0
            answer = await cs.set_charging_profile("CP001", 0, tx_default(10))
            assert answer == {"status": "Accepted"}
            c = (await sim.until(lambda s: s["connectors"]["1"]["pilot_amps"] == 10.0))[
                "connectors"]["1"]
            assert abs(c["pilot_duty"] - 10 / 0.6) < 0.2  # IEC 61851: amps = duty % x 0.6
            assert c["relay"] and c["status"] == "Charging"
            sched = await cs.get_composite_schedule("CP001", 1, 600)
            assert sched["status"] == "Accepted"
            assert sched["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"] == 10
            # below 6 A the PWM goes and the charger suspends; the relay opens under no load
            await cs.set_charging_profile("CP001", 0, tx_default(4))
            c = (await sim.until(lambda s: s["connectors"]["1"]["status"] == "SuspendedEVSE"))[
                "connectors"]["1"]
            assert c["pilot_duty"] is None
            assert (await cs.clear_charging_profile("CP001", id=1)) == {"status": "Accepted"}
            c = (await sim.until(lambda s: s["connectors"]["1"]["pilot_amps"] == 32.0))[
                "connectors"]["1"]
            await sim.until(lambda s: s["connectors"]["1"]["status"] == "Charging")
            s = await sim.ask(cmd="status")
            print("heap with a profile, frozen at 110000: peak %d B live, %d B free"
                  % (s["heap_peak"], s["heap_free"]))
    run(scenario())


def test_a_card_on_the_local_list_starts_a_session_offline(world):  # noqa: F811
    broker, _, make_sim, make_csms = world

    async def scenario():
        async with make_csms() as cs:
            sim = make_sim()
            cp = await online(sim, cs)
            local = "04A1B2C3D4E5F7"  # a card the Central System has not authorised
            entries = [{"idTag": "04%08X" % i, "idTagInfo": {"status": "Accepted"}}
                       for i in range(20)] + [{"idTag": local, "idTagInfo": {
                           "status": "Accepted"}}]
            assert (await cs.send_local_list("CP001", 3, "Full", entries)) == {
                "status": "Accepted"}
            assert (await cs.get_local_list_version("CP001")) == {"listVersion": 3}
            broker.stop()
            await sim.until(lambda s: not s["online"])
            await sim.ask(cmd="load", connector=1, amps=16.0)
            await sim.ask(cmd="rfid", uid=local)  # never authorised online
            s = await sim.ask(cmd="ev", connector=1, state="C")
            s = await sim.until(lambda s: s["connectors"]["1"]["relay"])
            assert s["connectors"]["1"]["id_tag"] == local
            broker.start()  # back online: the transaction is reported, nothing was asked
            tx = await cs.wait_for(lambda: list(cp.transactions.values()), T)
            assert tx[0].id_tag == local
            assert not [f for f in cp.frames if '"Authorize"' in f.text]
    run(scenario())


def _at(seconds):
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_reservation_is_honoured_and_another_expires(world):  # noqa: F811
    _, _, make_sim, make_csms = world

    async def scenario():
        async with make_csms() as cs:
            sim = make_sim()
            cp = await online(sim, cs)
            assert (await cs.reserve_now("CP001", 1, _at(600), TAG, 7)) == {
                "status": "Accepted"}
            await sim.until(lambda s: s["connectors"]["1"]["status"] == "Reserved")
            await sim.ask(cmd="rfid", uid="04A1B2C3D4E5F7")  # another card: not for it
            await sim.ask(cmd="ev", connector=1, state="C")
            s = await sim.ask(cmd="status")
            assert not s["connectors"]["1"]["relay"] and s["connectors"]["1"]["transaction_id"] \
                is None
            await sim.ask(cmd="rfid", uid=TAG)  # the reserved card starts it
            await sim.until(lambda s: s["connectors"]["1"]["relay"])
            starts = await cs.wait_for(lambda: [
                f.message()[3] for f in cp.frames
                if f.direction == "in" and '"StartTransaction"' in f.text], T)
            assert starts[0]["reservationId"] == 7 and starts[0]["idTag"] == TAG
            await sim.ask(cmd="ev", connector=1, state="A")
            await cs.wait_for(lambda: [t for t in cp.transactions.values() if t.stopped], T)
            await sim.until(lambda s: s["connectors"]["1"]["status"] == "Available")
            # a reservation that runs out: Reserved, then Available again on its own
            assert (await cs.reserve_now("CP001", 1, _at(3), TAG, 8)) == {"status": "Accepted"}
            await sim.until(lambda s: s["connectors"]["1"]["status"] == "Reserved")
            await sim.until(lambda s: s["connectors"]["1"]["status"] == "Available", 15)
            assert (await cs.cancel_reservation("CP001", 8)) == {"status": "Rejected"}
    run(scenario())


def test_diagnostics_and_security_log_uploads(world):  # noqa: F811
    _, _, make_sim, make_csms = world
    received = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_PUT(self):  # noqa: N802
            received[self.path] = self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(201)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    async def scenario():
        async with make_csms() as cs:
            sim = make_sim()
            cp = await online(sim, cs)
            url = "http://127.0.0.1:%d/diag/" % server.server_port
            answer = await cs.get_diagnostics("CP001", url)
            name = answer["fileName"]
            assert name.startswith("diagnostics-") and name.endswith(".txt")
            await cs.wait_for(lambda: cp.diagnostics_status == "Uploaded", T)
            body = received["/diag/" + name].decode()
            assert "boot 1, firmware 0.1.0" in body  # the log, from its first line
            assert "GetDiagnostics" in body
            # a hard reset keeps only what is on the flash (the simulator kills the firmware,
            # no finally block runs): the ResetOrReboot line must be there already
            assert (await cs.reset("CP001", "Hard"))["status"] == "Accepted"
            await sim.until(lambda s: s["boots"] == 2 and s["online"])
            # the security log alone (security extensions' GetLog)
            answer = await cs.get_log("CP001", "SecurityLog", 5, url)
            assert answer["status"] == "Accepted"
            await cs.wait_for(lambda: cp.log_status == "Uploaded", T)
            lines = received["/diag/" + answer["filename"]].decode().splitlines()
            assert lines and all(" security " in line for line in lines)
            assert any("StartupOfTheDevice" in line for line in lines)
            assert any("ResetOrReboot: Reset.req (Hard)" in line for line in lines), lines
    try:
        run(scenario())
    finally:
        server.shutdown()


def test_security_events_certificates_and_extended_trigger(world, tmp_path):  # noqa: F811
    _, pki, make_sim, make_csms = world
    other = certs.ensure_pki(str(tmp_path / "other-ca"), chargers=())  # a second root CA
    with open(other.ca) as f:
        root = f.read()

    async def scenario():
        async with make_csms() as cs:
            sim = make_sim()
            cp = await online(sim, cs)
            await cs.wait_for(lambda: "StartupOfTheDevice" in cp.security_events, T)
            assert (await cs.install_certificate("CP001", root)) == {"status": "Accepted"}
            ids = await cs.get_installed_certificate_ids("CP001")
            assert ids["status"] == "Accepted" and len(ids["certificateHashData"]) == 2
            await cs.wait_for(
                lambda: "ReconfigurationOfSecurityParameters" in cp.security_events, T)
            beats = cp.heartbeats
            assert (await cs.extended_trigger_message("CP001", "Heartbeat")) == {
                "status": "Accepted"}
            await cs.wait_for(lambda: cp.heartbeats > beats, T)
            # the installed root is used from the next boot: the broker's CA still works
            await cs.reset("CP001", "Hard")
            await sim.until(lambda s: s["boots"] == 2 and s["online"])
            await cs.wait_for(lambda: "ResetOrReboot" in cp.security_events, T)
    run(scenario())
