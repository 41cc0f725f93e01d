"""The table of features (chargepoint.model): a feature is one class and one line in the
table; what the charge point offers is derived from the table; nothing is re-assigned on
another object at run time."""
import ast
import glob
import os

import pytest

from chargepoint.model.features import FEATURES
from chargepoint.model import Feature, handler
from conftest import ROOT, Rig


class AcmeParking(Feature):
    """A charger maker's DataTransfer, as a feature of its own: this class is the module."""
    name = "parking"
    vendor_id = "com.acme"

    def __init__(self, cp, services):
        self.cp = cp
        self.count = 0

    def data_transfer(self, message_id, data):
        if message_id != "occupancy":
            return {"status": "UnknownMessageId"}
        self.count += 1
        return {"status": "Accepted", "data": "%s %d" % (data, self.count)}


def test_a_vendor_data_transfer_is_one_feature_and_one_line_in_the_table():
    rig = Rig(features=FEATURES + (AcmeParking,))  # the one line
    rig.step()
    assert rig.send("DataTransfer", {"vendorId": "com.acme", "messageId": "occupancy",
                                     "data": "bay 3"})[2] == {"status": "Accepted",
                                                              "data": "bay 3 1"}
    assert rig.send("DataTransfer", {"vendorId": "com.acme", "messageId": "x"})[2] == \
        {"status": "UnknownMessageId"}
    assert rig.send("DataTransfer", {"vendorId": "com.other"})[2] == {"status": "UnknownVendorId"}
    assert rig.cp.parking.count == 1


def test_supported_feature_profiles_come_from_the_table():
    rig = Rig()
    rig.step()
    key = rig.send("GetConfiguration", {"key": ["SupportedFeatureProfiles"]})[2]
    assert key["configurationKey"][0]["value"] == "Core,RemoteTrigger,SmartCharging,Reservation"
    # the Core profile's own features, and none of the others
    bare = Rig(features=FEATURES[:4])
    assert [kind.name for kind in FEATURES[:4]] == ["security", "availability", "remote",
                                                          "metering"]
    bare.step()
    key = bare.send("GetConfiguration", {"key": ["SupportedFeatureProfiles"]})[2]
    assert key["configurationKey"][0]["value"] == "Core,RemoteTrigger"
    # and what is not in the table is not offered
    assert bare.send("SetChargingProfile", {"connectorId": 1, "csChargingProfiles": {
        "chargingProfileId": 1, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Relative", "chargingSchedule": {
            "chargingRateUnit": "A", "chargingSchedulePeriod": [
                {"startPeriod": 0, "limit": 10}]}}})[2] == "NotSupported"
    assert bare.send("TriggerMessage", {"requestedMessage": "DiagnosticsStatusNotification"})[
        2] == {"status": "NotImplemented"}
    assert bare.cp.reservations is None and bare.cp.smartcharging is None
    bare.tap("04A1B2C3D4")  # and a session runs all the same
    bare.ev("C")
    assert bare.hw().relay.closed


def test_a_feature_whose_service_is_missing_is_not_installed(tmp_path):
    rig = Rig()
    assert rig.cp.local_list is None and rig.cp.firmware is None
    rig = Rig(services={"folder": str(tmp_path)})
    assert rig.cp.local_list is not None


def _callables(obj):
    return {name: id(value) for name, value in vars(obj).items() if callable(value)}


def test_no_callable_of_the_charge_point_or_its_features_is_reassigned_at_run_time(tmp_path):
    """Walks every feature, the engine and the charge point after construction and after a
    session, a reset and a diagnostics upload: the same callables, none swapped."""
    from conftest import attach

    rig = Rig()
    log, up = attach(rig, tmp_path)
    cp = rig.cp
    owners = [cp, cp.engine, cp.config, cp.txq, cp.sessions] + [
        getattr(cp, kind.name) for kind in FEATURES if getattr(cp, kind.name) is not None]
    before = [_callables(o) for o in owners]
    listeners = (list(cp.engine.frame_listeners), list(cp.reboot_listeners),
                 list(cp.clock_listeners), list(cp.config.listeners))
    rig.board.rfid.present("04A1B2C3D4")
    rig.ev("C")
    rig.send("GetDiagnostics", {"location": "http://h/"})
    rig.send("Reset", {"type": "Hard"})
    rig.run(4)
    assert rig.reboots == [True] and up.calls
    assert [_callables(o) for o in owners] == before
    assert (cp.engine.frame_listeners, cp.reboot_listeners, cp.clock_listeners,
            cp.config.listeners) == listeners


def test_no_module_of_the_firmware_assigns_a_callable_to_another_object():
    """The same, read from the source: an assignment to an attribute of something other than
    `self` may store data, never a function, a lambda or a method (any name defined with
    `def` in lib/), nor fill a hook the old way (reboot, on_frame, print, on_step...)
    (CONVENTIONS 19)."""
    hooks = {"reboot", "on_frame", "print", "on_step", "next_call", "on_answer", "factory"}
    found = []
    for path in glob.glob(os.path.join(ROOT, "lib", "**", "*.py"), recursive=True):
        with open(path) as f:
            tree = ast.parse(f.read())
        defs = {n.name for n in ast.walk(tree)
                if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))} | {"print"}
        variables = {n.id for n in ast.walk(tree)
                     if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        functions = defs - variables  # names that are only ever functions here
        for node in ast.walk(tree):
            if not isinstance(node, ast.Assign):
                continue
            for target in node.targets:
                if not isinstance(target, ast.Attribute):
                    continue
                if isinstance(target.value, ast.Name) and target.value.id == "self":
                    continue
                value = node.value
                if (target.attr in hooks or isinstance(value, ast.Lambda)
                        or isinstance(value, ast.Name) and value.id in functions
                        or isinstance(value, ast.Attribute) and value.attr in defs
                        and isinstance(value.value, ast.Name) and value.value.id == "self"):
                    found.append("%s:%d" % (os.path.relpath(path, ROOT), node.lineno))
    assert found == []


@pytest.mark.parametrize("kind", FEATURES)
def test_every_feature_declares_itself_in_one_place(kind):
    assert issubclass(kind, Feature) and kind.name
    for key in kind.keys:
        assert isinstance(key, tuple) and isinstance(key[0], str)
    assert all(isinstance(n, str) for n in kind.needs + kind.triggers + kind.routes)
    for action in kind.routes:  # each route is handled by the method of its name
        assert callable(getattr(kind, handler(action))), action
