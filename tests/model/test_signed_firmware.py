"""SignedUpdateFirmware and SignedFirmwareStatusNotification (chargepoint.model.firmware with
chargepoint.model.signing) with a fake updater: the signing certificate against the installed
ManufacturerRootCertificate, the package's signature, every status with the requestId, the
security events, and SignedFirmwareOnly; the platform side runs on the twin
(tests/test_e2e_signed_update.py)."""
import base64
import datetime
import hashlib
import sys

import jsonschema
import pytest

from conftest import T0, schema
from chargepoint.model import updating
from chargepoint.ocpp.timestamps import iso
from test_firmware import TAG, FakeUpdater, UpdateRig
from tools import certs, fwpack

PACKAGE = b'{"format":1,"kind":"image"}\npayload bytes'
ALTERED = PACKAGE[:-1] + b"S"
UTC = datetime.timezone.utc
LONG = (datetime.datetime(2020, 1, 1, tzinfo=UTC), datetime.datetime(2040, 1, 1, tzinfo=UTC))
EXPIRED = (datetime.datetime(2020, 1, 1, tzinfo=UTC), datetime.datetime(2021, 1, 1, tzinfo=UTC))


def _read(path):
    with open(path) as f:
        return f.read()


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """PEM texts: the manufacturer roots (P-256 and RSA-3072), signing certificates and keys
    they issued, one expired, and one issued by a stranger of the same name as the EC root."""
    d = str(tmp_path_factory.mktemp("pki"))
    made = {}
    for kind in ("ec", "rsa"):
        root, cert, key = certs.firmware_signing(
            d, kind, names=("root-" + kind, "signer-" + kind), valid=LONG, root_valid=LONG)
        made["root-" + kind] = _read(root)
        made["signer-" + kind] = (_read(cert), _read(key))
    _, cert, key = certs.firmware_signing(d, "ec", names=("root-ec", "expired"), valid=EXPIRED)
    made["expired"] = (_read(cert), _read(key))
    other = str(tmp_path_factory.mktemp("stranger"))
    _, cert, key = certs.firmware_signing(other, "ec", names=("root-ec", "forged"), valid=LONG,
                                          root_valid=LONG)
    made["forged"] = (_read(cert), _read(key))
    return made


class SignedUpdater(FakeUpdater):
    """The fake updater, with the SHA-256 of the file it "downloaded"."""

    def __init__(self, data=PACKAGE, **kw):
        super().__init__(**kw)
        self.data = data
        self.digest = None

    def download(self, url):
        super().download(url)
        self.digest = hashlib.sha256(self.data).digest()


@pytest.fixture
def up():
    return SignedUpdater()


def install_root(rig, pem):
    msg = rig.send("InstallCertificate", {"certificateType": "ManufacturerRootCertificate",
                                          "certificate": pem})
    assert msg[2] == {"status": "Accepted"}


@pytest.fixture
def srig(up, pki):
    r = UpdateRig(up)
    r.step()
    install_root(r, pki["root-ec"])
    install_root(r, pki["root-rsa"])
    return r


def signed_update(rig, signer, data=PACKAGE, at=0, request_id=7, **extra):
    cert, key = signer
    fw = dict({"location": "https://fw.example/0.9.0.cpfw",
               "retrieveDateTime": iso(T0 + rig.ticks.now // 1000 + at),
               "signingCertificate": cert, "signature": fwpack.sign(data, key.encode())},
              **extra)
    p = {"requestId": request_id, "firmware": fw}
    jsonschema.validate(p, schema("SignedUpdateFirmware"))
    msg = rig.send("SignedUpdateFirmware", p)
    jsonschema.validate(msg[2], schema("SignedUpdateFirmwareResponse"))
    return msg[2]["status"]


def settle(rig, ms=100):
    """Loops until the signature checks (a slice per loop) are done."""
    rig.step(ms)
    for _ in range(5000):
        if rig.cp.firmware.phase not in ("check", "verify"):
            break
        rig.cp.loop()
        rig.step()
    rig.step(ms)


def signed_statuses(rig, request_id=7):
    found = rig.payloads("SignedFirmwareStatusNotification")
    assert all(p.get("requestId") == request_id for p in found), found
    return [p["status"] for p in found]


def events(rig, kind):
    return [p.get("techInfo") for p in rig.payloads("SecurityEventNotification")
            if p["type"] == kind]


def crypto_loaded():
    return sorted(m for m in sys.modules if m.startswith(("chargepoint.crypto",
                                                          "chargepoint.model.signing")))


@pytest.mark.parametrize("kind", ["ec", "rsa"])
def test_a_signed_package_is_verified_then_installed(srig, up, pki, kind):
    assert signed_update(srig, pki["signer-" + kind]) == "Accepted"
    settle(srig)
    assert signed_statuses(srig) == ["Downloading", "Downloaded", "SignatureVerified",
                                     "Installing", "InstallRebooting"]
    assert up.done == [("download", "https://fw.example/0.9.0.cpfw"), ("install",)]
    srig.step(3000)
    assert srig.reboots == [True] and srig.payloads("FirmwareStatusNotification") == []
    assert crypto_loaded() == []  # the arithmetic is dropped once the checks are done


def test_the_new_firmware_reports_installed_with_the_request_id(srig, up, pki):
    signed_update(srig, pki["signer-ec"], request_id=41)
    settle(srig)
    files = srig.files
    after = SignedUpdater(outcome="trying")
    r = UpdateRig(after, files=files)
    r.step()
    r.step(100)
    assert signed_statuses(r, 41) == ["Installed"] and after.done == [("commit",)]
    assert "fwreq" not in files


def test_a_rolled_back_signed_update_reports_installation_failed_with_its_request_id(srig, pki):
    signed_update(srig, pki["signer-ec"], request_id=42)
    settle(srig)
    after = SignedUpdater(outcome="failed")
    r = UpdateRig(after, files=srig.files)
    r.step()
    assert signed_statuses(r, 42) == ["InstallationFailed"]


def test_a_package_altered_after_signing_is_refused(srig, up, pki):
    up.data = ALTERED
    assert signed_update(srig, pki["signer-ec"]) == "Accepted"
    settle(srig)
    assert signed_statuses(srig) == ["Downloading", "Downloaded", "InvalidSignature"]
    assert up.done == [("download", "https://fw.example/0.9.0.cpfw")] and srig.reboots == []
    assert events(srig, updating.SIGNATURE_EVENT) == [
        "package https://fw.example/0.9.0.cpfw: signature does not check out"]
    assert srig.cp.firmware.phase is None and crypto_loaded() == []


def test_a_signature_by_another_key_is_refused(srig, up, pki):
    cert, _ = pki["signer-ec"]
    _, other_key = pki["signer-rsa"]
    assert signed_update(srig, (cert, other_key)) == "Accepted"
    settle(srig)
    assert signed_statuses(srig)[-1] == "InvalidSignature" and ("install",) not in up.done
    assert len(events(srig, updating.SIGNATURE_EVENT)) == 1


def test_a_signing_certificate_of_another_root_of_the_same_name_is_refused(srig, up, pki):
    # its issuer names the installed root, but another key signed it: found in the slices
    assert signed_update(srig, pki["forged"]) == "Accepted"
    settle(srig)
    assert signed_statuses(srig) == ["InvalidSignature"] and up.done == []
    assert events(srig, updating.CERTIFICATE_EVENT) == [
        "signing certificate not signed by an installed ManufacturerRootCertificate"]


def test_an_expired_signing_certificate_is_an_invalid_certificate(srig, up, pki):
    assert signed_update(srig, pki["expired"]) == "InvalidCertificate"
    srig.step(100)
    assert signed_statuses(srig) == [] and up.done == []
    assert "not valid now" in events(srig, updating.CERTIFICATE_EVENT)[0]


def test_without_a_manufacturer_root_every_signing_certificate_is_invalid(up, pki):
    r = UpdateRig(up)
    r.step()
    assert signed_update(r, pki["signer-ec"]) == "InvalidCertificate"
    assert "not issued by an installed ManufacturerRootCertificate" in \
        events(r, updating.CERTIFICATE_EVENT)[0]
    assert crypto_loaded() == []


def test_an_unreadable_signing_certificate_is_an_invalid_certificate(srig, up, pki):
    _, key = pki["signer-ec"]
    assert signed_update(srig, ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
                                key)) == "InvalidCertificate"
    assert events(srig, updating.CERTIFICATE_EVENT)[0].startswith("signing certificate unreadable")


def test_scheduled_download_and_install_are_reported(srig, up, pki):
    assert signed_update(srig, pki["signer-ec"], at=600,
                         installDateTime=iso(T0 + srig.ticks.now // 1000 + 1200)) == "Accepted"
    settle(srig)
    assert signed_statuses(srig) == ["DownloadScheduled"] and up.done == []
    srig.run(601)
    settle(srig)
    assert signed_statuses(srig) == ["DownloadScheduled", "Downloading", "Downloaded",
                                     "SignatureVerified", "InstallScheduled"]
    srig.run(600)
    assert signed_statuses(srig)[-2:] == ["Installing", "InstallRebooting"]


def test_install_is_scheduled_while_a_transaction_runs(srig, up, pki):
    srig.tap(TAG)
    srig.ev("C")
    signed_update(srig, pki["signer-ec"])
    settle(srig)
    srig.run(30)
    assert signed_statuses(srig)[-1] == "InstallScheduled" and ("install",) not in up.done
    srig.tap(TAG)
    srig.step(100)
    assert signed_statuses(srig)[-2:] == ["Installing", "InstallRebooting"]


def test_a_signed_package_for_another_board_fails_verification_of_the_install(srig, up, pki):
    up.fail.add("board")
    signed_update(srig, pki["signer-ec"])
    settle(srig)
    assert signed_statuses(srig) == ["Downloading", "Downloaded", "SignatureVerified",
                                     "InstallVerificationFailed"]
    assert len(events(srig, updating.REFUSED_EVENT)) == 1 and srig.reboots == []


def test_a_second_request_cancels_the_first(srig, up, pki):
    up.fail.add("slow")
    assert signed_update(srig, pki["signer-ec"], at=600) == "Accepted"
    assert signed_update(srig, pki["signer-ec"], request_id=8) == "AcceptedCanceled"
    up.fail.discard("slow")
    settle(srig)
    assert [p["requestId"] for p in srig.payloads("SignedFirmwareStatusNotification")] == \
        [8, 8, 8, 8, 8]


def test_extended_trigger_reports_the_signed_update_with_its_request_id(srig, up, pki):
    up.fail.add("slow")
    trigger = {"requestedMessage": "FirmwareStatusNotification"}
    assert srig.send("ExtendedTriggerMessage", trigger)[2] == {"status": "Accepted"}
    assert srig.payloads("SignedFirmwareStatusNotification") == [{"status": "Idle"}]
    signed_update(srig, pki["signer-ec"])
    settle(srig)
    srig.send("ExtendedTriggerMessage", trigger)
    assert srig.payloads("SignedFirmwareStatusNotification")[-2:] == [
        {"status": "Downloading", "requestId": 7}, {"status": "Downloading", "requestId": 7}]


def test_a_signed_job_survives_a_power_cut_and_is_checked_again(srig, up, pki):
    signed_update(srig, pki["signer-ec"], at=600)
    srig.power_cut()
    settle(srig)
    srig.run(601)
    settle(srig)
    assert signed_statuses(srig)[-3:] == ["SignatureVerified", "Installing", "InstallRebooting"]


def test_unsigned_updates_are_refused_once_a_manufacturer_root_is_installed(srig, up):
    p = {"location": "https://fw.example/0.9.0.cpfw", "retrieveDate": iso(T0)}
    msg = srig.send("UpdateFirmware", p)
    assert msg[0] == 4 and msg[2] == "SecurityError"
    assert up.done == [] and crypto_loaded() == []
    assert srig.send("ChangeConfiguration", {"key": "SignedFirmwareOnly",
                                             "value": "false"})[2] == {"status": "Accepted"}
    assert srig.send("UpdateFirmware", p)[2] == {}
    srig.step(100)
    assert up.done[:1] == [("download", "https://fw.example/0.9.0.cpfw")]


def test_unsigned_updates_go_on_without_a_manufacturer_root(up):
    r = UpdateRig(up)
    r.step()
    assert r.send("UpdateFirmware", {"location": "https://x/y", "retrieveDate": iso(T0)})[2] == {}
