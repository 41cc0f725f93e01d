"""Safe mode (issue: nothing stuck): after boots that failed in a row (main.py), the charge
point is built from chargepoint.app.safe_features() only: every connector Faulted with
InternalError and the reason in `info`, no session ever starts, and only what it takes to be
reached and repaired is answered. The boot guard itself: tests/test_e2e_safe_mode.py."""
from chargepoint import app
from chargepoint.model.chargepoint import SAFE_ACTIONS
from conftest import Rig

TAG = "04A1B2C3D4"
WHY = "5 boots failed: ValueError: incompatible .mpy file"


def safe_rig():
    r = Rig(connectors=2, features=app.safe_features(), safe_mode=WHY)
    r.step()
    return r


def test_every_connector_is_faulted_with_the_reason():
    r = safe_rig()
    statuses = [p for a, p in r.cs.calls if a == "StatusNotification"]
    assert {p["connectorId"] for p in statuses} == {0, 1, 2}
    for p in statuses:
        assert (p["status"], p["errorCode"], p["info"]) == ("Faulted", "InternalError", WHY[:50])
    assert r.cp.registration == "Accepted"


def test_no_session_starts_and_the_relays_stay_open():
    r = safe_rig()
    r.tap(TAG)
    r.ev("C")
    r.ev("C", cid=2)
    answer = r.send("RemoteStartTransaction", {"idTag": TAG, "connectorId": 1})
    assert answer[0] == 4 and answer[2] == "NotSupported"
    r.run(5)
    assert not r.hw().relay.closed and not r.hw(2).relay.closed
    assert r.hw().pilot.amps is None and not r.payloads("StartTransaction")
    assert r.payloads("Authorize") == []


def test_only_what_repairs_the_charger_is_answered():
    r = safe_rig()
    assert r.send("ChangeConfiguration", {"key": "HeartbeatInterval", "value": "120"})[2] == {
        "status": "Accepted"}
    assert r.send("GetConfiguration", {"key": ["HeartbeatInterval"]})[0] == 3
    trigger = r.send("TriggerMessage", {"requestedMessage": "StatusNotification",
                                        "connectorId": 1})
    assert trigger[2] == {"status": "Accepted"}
    for action, payload in (("ReserveNow", {"connectorId": 1, "expiryDate": "2030-01-01T00:00Z",
                                            "idTag": TAG, "reservationId": 1}),
                            ("SendLocalList", {"listVersion": 1, "updateType": "Full"}),
                            ("ClearCache", {}), ("UnlockConnector", {"connectorId": 1}),
                            ("ChangeAvailability", {"connectorId": 0, "type": "Inoperative"})):
        assert r.send(action, payload)[2] == "NotSupported", action
    assert "Reset" in SAFE_ACTIONS and "UpdateFirmware" in SAFE_ACTIONS
    assert r.send("Reset", {"type": "Hard"})[2] == {"status": "Accepted"}
    r.run(5)
    assert r.reboots == [True]


def test_a_normal_charge_point_is_not_in_safe_mode():
    r = Rig()
    r.step()
    assert r.cp.safe_mode is None
    statuses = [p for a, p in r.cs.calls if a == "StatusNotification"]
    assert statuses and all("info" not in p and p["status"] == "Available" for p in statuses)


STABLE = """
import asyncio, json
from chargepoint import app, bootguard
app.STABLE_MS = 30
app.STABLE_CRASHES_MS = 60
with open("data/bootguard", "w") as f:
    f.write('{"n": 4, "c": 2, "cause": "ValueError: x"}')
bootguard.clear("data")
print(open("data/bootguard").read())
asyncio.run(app._stable("data"))
print(open("data/bootguard").read())
"""

LATE = """
import asyncio, json, machine
from chargepoint import app, bootguard
machine._cause[0] = machine.HARD_RESET  # (the simulated machine: as after a reset)
machine.reset = lambda: None  # (the probe goes on as the next boot)
app.STABLE_MS = 30  # the stable minute, scaled

async def firmware():  # runs past its stable minute, then raises
    asyncio.create_task(app._stable("data"))
    await asyncio.sleep_ms(60)
    raise ValueError("late")

got = []
for boot in range(6):
    safe = bootguard.begin()  # main.py's
    got.append(safe)
    if safe is None:
        try:
            asyncio.run(firmware())
        except Exception as e:
            bootguard.failed(e)
        asyncio.new_event_loop()
print(json.dumps(got))
machine._cause[0] = machine.PWRON_RESET  # a power cut: the crashes stay counted
print(json.dumps(bootguard.begin()))
bootguard.clear("data", True)  # a stable hour, or a reboot asked for
print(json.dumps(bootguard.begin()))
"""

COUNT = """
import json, machine
from chargepoint import bootguard
machine._cause[0] = machine.HARD_RESET  # (the simulated machine: as after a reset)
got = [bootguard.begin() for _ in range(7)]
print(json.dumps(got))
machine._cause[0] = machine.PWRON_RESET
print(json.dumps([bootguard.begin(), open("data/bootguard").read()]))
"""


def twin_probe(tmp_path, source):
    import os
    import subprocess

    from conftest import ROOT
    from tools import twin

    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "probe.py").write_text(source)
    r = subprocess.run([twin.ensure(), "probe.py"], cwd=str(tmp_path), capture_output=True,
                       text=True, timeout=60, env=dict(os.environ, MICROPYPATH=".frozen:" + ROOT))
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.strip().splitlines()


def test_a_stable_run_clears_the_boot_guard_on_the_twin(tmp_path):
    import json

    minute, hour = map(json.loads, twin_probe(tmp_path, STABLE)[-2:])
    assert minute == {"n": 0, "c": 2, "cause": "ValueError: x"}  # crashes counted still
    assert hour == {"n": 0, "c": 0, "cause": None}


def test_a_firmware_that_raises_after_its_stable_minute_ends_in_safe_mode_on_the_twin(tmp_path):
    import json

    got, after_power_on, after_clear = map(json.loads, twin_probe(tmp_path, LATE)[-3:])
    assert got == [None] * 5 + ["5 crashes: ValueError: late"]
    assert after_power_on == "5 crashes: ValueError: late" and after_clear is None


def test_boots_are_counted_until_safe_mode_and_a_power_on_starts_again_on_the_twin(tmp_path):
    import json

    lines = twin_probe(tmp_path, COUNT)
    reasons = json.loads(lines[0])
    assert reasons[:5] == [None] * 5
    assert reasons[5] == "5 boots failed: reset before a stable minute" and reasons[6]
    after_power_on, record = json.loads(lines[1])
    assert after_power_on is None and json.loads(record) == {"n": 1, "c": 0, "cause": None}
