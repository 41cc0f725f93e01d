"""UpdateFirmware and FirmwareStatusNotification (chargepoint.model.firmware) with a fake
updater: when it downloads, retries, installs, waits for transactions, confirms and reports,
and how it reports a package for another board;
the platform side runs for real on the twin (tests/test_e2e_update.py)."""
import jsonschema
import pytest

from conftest import T0, Rig, schema
from chargepoint.model import updating
from chargepoint.ocpp.timestamps import iso
from chargepoint.platform.log import Log


TAG = "04A1B2C3D4"  # authorised by the conftest Central System
WRONG = "a mpy package for twin: this board takes image for twin"


class FakeUpdater:
    """Does its work at once (the real one in a thread); `fail` names the step that fails."""

    def __init__(self, outcome=None, fail=()):
        self.version = "0.1.0"
        self.new_version = "0.9.0"
        self.busy = False
        self.error = None
        self.refused = None
        self.fail = set(fail)
        self._outcome = outcome
        self.done = []

    def download(self, url):
        self.done.append(("download", url))
        self.busy = "slow" in self.fail  # still fetching
        self.error = "SHA-256 mismatch" if "download" in self.fail else None
        self.refused = WRONG if "board" in self.fail else None  # checked, not for this board

    def install(self):
        self.done.append(("install",))
        if self.refused is not None:  # as the real one: at once, nothing touched
            self.error = self.refused
            return
        self.error = "no room" if "install" in self.fail else None

    def outcome(self):
        return self._outcome

    def commit(self):
        self.done.append(("commit",))

    def forget(self):
        self.done.append(("forget",))


class UpdateRig(Rig):
    """The conftest rig with an updater, as app.py gives it on a board."""

    def __init__(self, updater, **kw):
        self.updater = updater
        super().__init__(services={"updater": updater}, **kw)


def update(rig, at=0, **extra):
    p = dict({"location": "https://fw.example/0.9.0.cpfw",
              "retrieveDate": iso(T0 + rig.ticks.now // 1000 + at)}, **extra)
    jsonschema.validate(p, schema("UpdateFirmware"))
    msg = rig.send("UpdateFirmware", p)
    assert msg[2] == {}
    return msg


def statuses(rig):
    return [p["status"] for p in rig.payloads("FirmwareStatusNotification")]


@pytest.fixture
def up():
    return FakeUpdater()


@pytest.fixture
def frig(up):
    r = UpdateRig(up)
    r.step()
    return r


def test_profile_listed(frig):
    got = frig.send("GetConfiguration", {"key": ["SupportedFeatureProfiles"]})[2]
    assert "FirmwareManagement" in got["configurationKey"][0]["value"].split(",")


def test_update_downloads_installs_and_resets(frig, up):
    update(frig)
    frig.step(100)
    assert statuses(frig) == ["Downloading", "Downloaded", "Installing"]
    assert up.done == [("download", "https://fw.example/0.9.0.cpfw"), ("install",)]
    frig.step(3000)  # the Installing notification goes first
    assert frig.reboots == [True]


def test_download_waits_for_the_retrieve_date(frig, up):
    update(frig, at=3600)
    frig.run(3500)
    assert statuses(frig) == [] and up.done == []
    frig.run(120)
    assert statuses(frig)[:1] == ["Downloading"]


def test_failed_download_is_retried_then_reported(frig, up):
    up.fail.add("download")
    update(frig, retries=2, retryInterval=30)
    frig.step(100)
    assert statuses(frig) == ["Downloading"] and len(up.done) == 1
    frig.run(29)
    assert len(up.done) == 1
    frig.run(2)
    assert len(up.done) == 2
    frig.run(31)
    assert len(up.done) == 3 and statuses(frig) == ["Downloading", "DownloadFailed"]
    frig.run(300)
    assert len(up.done) == 3 and frig.reboots == []


def test_install_waits_for_the_transactions_to_end(frig, up):
    frig.tap(TAG)
    frig.ev("C")
    assert frig.conn().tx is not None
    update(frig)
    frig.run(60)
    assert statuses(frig) == ["Downloading", "Downloaded"] and ("install",) not in up.done
    frig.tap(TAG)  # the driver ends the session
    frig.step(100)
    assert statuses(frig)[-1] == "Installing" and ("install",) in up.done


def test_failed_install_is_reported_and_nothing_resets(frig, up):
    up.fail.add("install")
    update(frig)
    frig.run(10)
    assert statuses(frig) == ["Downloading", "Downloaded", "Installing", "InstallationFailed"]
    assert frig.reboots == []


def test_a_package_for_another_board_fails_to_install_with_a_security_event(frig, up, tmp_path):
    log = frig.attach(log=lambda clock: Log(str(tmp_path), clock))["log"]
    up.fail.add("board")
    update(frig)
    frig.step(100)
    assert statuses(frig) == ["Downloading", "Downloaded", "InstallationFailed"]
    assert frig.reboots == [] and frig.cp.firmware.phase is None
    events = [p for p in frig.payloads("SecurityEventNotification")
              if p["type"] == updating.REFUSED_EVENT]
    assert [e["techInfo"] for e in events] == [WRONG]
    log.flush()
    with open(log.path(0)) as f:
        assert " security InvalidFirmwarePackage: %s\n" % WRONG in f.read()


def test_a_package_for_another_board_is_reported_without_waiting_for_the_transaction(frig, up):
    up.fail.add("board")
    frig.tap(TAG)
    frig.ev("C")
    update(frig)
    frig.step(100)
    assert statuses(frig) == ["Downloading", "Downloaded", "InstallationFailed"]
    assert frig.conn().tx is not None and frig.reboots == []


def test_a_job_survives_a_power_cut_before_the_download(frig, up):
    update(frig, at=600)
    frig.power_cut()
    frig.step(100)
    frig.run(601)
    assert up.done[:1] == [("download", "https://fw.example/0.9.0.cpfw")]


def test_new_firmware_is_kept_once_the_central_system_accepts_it():
    up = FakeUpdater(outcome="trying")
    r = UpdateRig(up)
    r.step()
    r.step(100)
    assert up.done == [("commit",)] and statuses(r) == ["Installed"]
    events = [p for p in r.payloads("SecurityEventNotification") if p["type"] == "FirmwareUpdated"]
    assert [e["techInfo"] for e in events] == ["now running 0.1.0"]


def test_new_firmware_not_accepted_in_time_resets_for_the_rollback():
    up = FakeUpdater(outcome="trying")
    r = UpdateRig(up, online=False)
    r.run(updating.TRIAL_MS // 1000 - 1)
    assert r.reboots == []
    r.run(2)
    assert r.reboots == [True] and up.done == []


def test_rolled_back_update_is_reported_as_installation_failed():
    up = FakeUpdater(outcome="failed")
    r = UpdateRig(up)
    r.step()
    assert up.done == [("forget",)] and statuses(r) == ["InstallationFailed"]


def test_trigger_reports_the_update_under_way_else_idle(frig, up):
    up.fail.add("slow")
    frig.send("TriggerMessage", {"requestedMessage": "FirmwareStatusNotification"})
    assert statuses(frig) == ["Idle"]
    update(frig, at=3600)
    frig.send("TriggerMessage", {"requestedMessage": "FirmwareStatusNotification"})
    assert statuses(frig) == ["Idle", "Idle"]  # nothing reported yet: waiting for the date
    frig.run(3601)
    frig.send("TriggerMessage", {"requestedMessage": "FirmwareStatusNotification"})
    assert statuses(frig)[-2:] == ["Downloading", "Downloading"]


def test_without_an_updater_update_firmware_is_not_supported(rig):
    msg = rig.send("UpdateFirmware", {"location": "http://x/y", "retrieveDate": iso(T0)})
    assert msg[0] == 4 and msg[2] == "NotSupported"
