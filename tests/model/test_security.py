"""OCPP 1.6 security extensions: SecurityEventNotification, ExtendedTriggerMessage, certificate
management (InstallCertificate, GetInstalledCertificateIds, DeleteCertificate) and the X.509
parsing under it, checked against certificates made with the `cryptography` package."""
import datetime
import hashlib
import json
import os
import socket
import ssl
import subprocess
import threading

import jsonschema
import pytest
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from conftest import ROOT, T0, Rig, attach, schema
from chargepoint.model import certificates, security
from chargepoint.ocpp import x509
from chargepoint.ocpp.config import STR
from chargepoint.ocpp.timestamps import iso
from chargepoint.platform.timesync import TimeSync
from chargepoint.model.chargepoint import ChargePoint
from chargepoint.platform.clock import Clock
from tools.fakes import FakeBoard, FakeTicks, LoopbackTransport, MemoryStore

DER = serialization.Encoding.DER
PEM = serialization.Encoding.PEM
CENTRAL = "CentralSystemRootCertificate"
MANUFACTURER = "ManufacturerRootCertificate"
REFUSED = "ValueError: The certificate is not correctly signed by the trusted CA"


def call(rig, action, payload):
    """The Central System's CALL, checked against the official schema; the CALLRESULT."""
    jsonschema.validate(payload, schema(action))
    msg = rig.send(action, payload)
    assert msg[0] == 3, msg
    return msg[2]


# -- certificates ------------------------------------------------------------------------------


def _name(cn):
    return cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_cert(cn, key=None, issuer=None, ca=True, serial=0x1A2B, days=(-30, 3650)):
    """(certificate, private key): self-signed unless `issuer` = (certificate, key)."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.fromtimestamp(T0, datetime.timezone.utc)
    builder = (cx509.CertificateBuilder().subject_name(_name(cn))
               .issuer_name(issuer[0].subject if issuer else _name(cn))
               .public_key(key.public_key()).serial_number(serial)
               .not_valid_before(now + datetime.timedelta(days=days[0]))
               .not_valid_after(now + datetime.timedelta(days=days[1])))
    if ca is not None:
        builder = builder.add_extension(cx509.BasicConstraints(ca=ca, path_length=None), True)
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256()), key


def pem(cert):
    return cert.public_bytes(PEM).decode()


def key_bits(cert):
    """The subjectPublicKey BIT STRING's bits, as RFC 6960's issuerKeyHash takes them."""
    public = cert.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        return public.public_bytes(serialization.Encoding.X962,
                                   serialization.PublicFormat.UncompressedPoint)
    return public.public_bytes(DER, serialization.PublicFormat.PKCS1)


def expected_ids(cert, issuer=None):
    """CertificateHashData as the Central System computes it from its own copy."""
    return {"hashAlgorithm": "SHA256",
            "issuerNameHash": hashlib.sha256(cert.issuer.public_bytes()).hexdigest(),
            "issuerKeyHash": hashlib.sha256(key_bits(issuer or cert)).hexdigest(),
            "serialNumber": "%x" % cert.serial_number}


@pytest.fixture(scope="module")
def roots():
    """Two EC roots, an RSA root, and an intermediate CA, a leaf and an expired root."""
    a = make_cert("Root A", serial=0x00A1)
    b = make_cert("Root B", serial=0x8000000000000001)  # high bit: DER adds a 00 byte
    r = make_cert("RSA root", rsa.generate_private_key(public_exponent=65537, key_size=2048),
                  serial=7)
    return {"a": a, "b": b, "rsa": r,
            "intermediate": make_cert("Sub CA", issuer=a, serial=9),
            "leaf": make_cert("leaf", issuer=a, ca=False, serial=10),
            "expired": make_cert("Old root", days=(-4000, -1)),
            "future": make_cert("New root", days=(10, 4000)),
            "no_constraints": make_cert("Plain", ca=None, serial=11)}


# -- X.509 parsing -------------------------------------------------------------------------


def test_x509_reads_what_identifies_a_certificate(roots):
    for name in ("a", "b", "rsa", "intermediate", "leaf"):
        cert = roots[name][0]
        parsed = x509.Certificate(cert.public_bytes(DER))
        issuer = roots["a"][0] if name in ("intermediate", "leaf") else None
        assert parsed.hash_data(key_bits(issuer) if issuer else None) == \
            expected_ids(cert, issuer), name
        assert parsed.issuer == cert.issuer.public_bytes()
        assert parsed.subject == cert.subject.public_bytes()
        assert parsed.not_before == int(cert.not_valid_before_utc.timestamp())
        assert parsed.not_after == int(cert.not_valid_after_utc.timestamp())
    assert x509.Certificate(roots["b"][0].public_bytes(DER)).serial == "8000000000000001"
    assert x509.Certificate(roots["rsa"][0].public_bytes(DER)).key_type == "RSA"
    assert x509.Certificate(roots["a"][0].public_bytes(DER)).key_type == "EC"


def test_x509_tells_roots_from_other_certificates(roots):
    def parsed(name):
        return x509.Certificate(roots[name][0].public_bytes(DER))

    assert parsed("a").ca and parsed("a").self_issued()
    assert parsed("intermediate").ca and not parsed("intermediate").self_issued()
    assert not parsed("leaf").ca
    assert not parsed("no_constraints").ca  # version 3 without basicConstraints: cA false


def test_x509_pem_blocks_and_malformed_input(roots):
    both = pem(roots["a"][0]) + "\r\n" + pem(roots["b"][0])
    assert x509.pem_blocks(both) == [roots["a"][0].public_bytes(DER),
                                     roots["b"][0].public_bytes(DER)]
    assert x509.pem_blocks("no certificate here") == []
    der = roots["a"][0].public_bytes(DER)
    for broken in (der[:40], der[:-1], b"\x30\x84\xff\xff\xff\xff", b"", b"\x02\x01\x00"):
        with pytest.raises(ValueError):
            x509.Certificate(broken)


# -- security events -----------------------------------------------------------------------


def events(rig):
    return [(p["type"], p.get("techInfo")) for p in rig.payloads("SecurityEventNotification")]


def test_startup_and_clock_setting_are_sent_once_boot_is_accepted():
    rig = Rig()
    rig.cs.answers["BootNotification"] = lambda p: {"status": "Pending", "interval": 60,
                                                    "currentTime": iso(T0 + 1)}
    rig.step()
    assert events(rig) == []  # recorded, but nothing but BootNotification before Accepted
    del rig.cs.answers["BootNotification"]
    rig.run(61)
    assert events(rig) == [("StartupOfTheDevice", "boot 1, firmware 0.1.0"),
                           ("SettingSystemTime", "BootNotification: clock set to %s"
                            % iso(T0 + 1))]
    first = rig.payloads("SecurityEventNotification")[0]
    assert first["timestamp"] == iso(T0 + 1)  # recorded before the clock was known: resolved
    assert len(rig.cp.security) == 0 and not rig.store.names("sev.")


def test_events_survive_a_power_cut_until_delivered():
    rig = Rig(online=False)
    rig.step()
    rig.power_cut()
    rig.step()
    assert rig.store.names("sev.") == ["sev.1", "sev.2"]
    rig.transport.connected = True
    rig.step()
    assert events(rig) == [("StartupOfTheDevice", "boot 1, firmware 0.1.0"),
                           ("StartupOfTheDevice", "boot 2, firmware 0.1.0"),
                           ("SettingSystemTime", "BootNotification: clock set to %s"
                            % iso(T0 + 1))]
    assert rig.store.names("sev.") == []


def test_at_most_twenty_events_are_kept_the_oldest_go():
    rig = Rig(online=False)
    for i in range(24):
        rig.cp.security.record("FirmwareUpdated", "v%d" % i)
    assert len(rig.cp.security) == 20 and rig.cp.security.dropped == 5
    assert rig.store.names("sev.")[0] == "sev.1"  # handed over already
    rig.transport.connected = True
    rig.run(3)
    # The oldest not yet handed over go (StartupOfTheDevice was, before the link was up).
    sent = events(rig)
    assert len(sent) == 20 and rig.cp.security.dropped == 6
    assert sent[0] == ("StartupOfTheDevice", "boot 1, firmware 0.1.0")
    assert sent[1:19] == [("FirmwareUpdated", "v%d" % i) for i in range(6, 24)]
    assert sent[19][0] == "SettingSystemTime"


def test_event_refused_by_the_central_system_is_dropped():
    rig = Rig()
    rig.cs.answers["SecurityEventNotification"] = ("NotImplemented", "unknown action")
    rig.step()
    assert [t for t, _ in events(rig)] == ["StartupOfTheDevice", "SettingSystemTime"]
    assert rig.cp.security.refused == 2 and not rig.store.names("sev.")
    rig.run(60)
    assert len(events(rig)) == 2  # never again


def test_unanswered_event_is_sent_again():
    rig = Rig()
    rig.cs.answers["SecurityEventNotification"] = None
    rig.step()
    assert len(events(rig)) == 1
    rig.run(30 + 9)  # the engine's 30 s timeout, then 10 s
    assert len(events(rig)) == 1
    rig.run(2)
    assert [t for t, _ in events(rig)] == ["StartupOfTheDevice"] * 2
    del rig.cs.answers["SecurityEventNotification"]
    rig.run(45)
    assert [t for t, _ in events(rig)][2:] == ["StartupOfTheDevice", "SettingSystemTime"]
    assert not rig.store.names("sev.")


def test_event_function_for_the_firmware_update_code(rig):
    rig.cp.security.record("FirmwareUpdated", "0.1.0 -> 0.2.0")
    rig.cp.security.record("InvalidFirmwareSignature", "x" * 300)
    rig.step()
    assert events(rig)[-2:] == [("FirmwareUpdated", "0.1.0 -> 0.2.0"),
                                ("InvalidFirmwareSignature", "x" * 255)]


def test_reset_request_records_reset_or_reboot_with_its_reason(rig):
    assert call(rig, "Reset", {"type": "Hard"}) == {"status": "Accepted"}
    rig.run(4)
    assert rig.reboots == [True]
    assert events(rig)[-1] == ("ResetOrReboot", "Reset.req (Hard)")


def test_reboot_by_the_firmware_itself_is_recorded_before_it_happens(rig):
    rig.transport.connected = False
    rig.cp.reboot(True)  # as the firmware update's trial does
    rig.power_cut()
    rig.transport.connected = True
    rig.step()
    assert [e for e in events(rig) if e[0] == "ResetOrReboot"] == [("ResetOrReboot",
                                                                    "Hard reboot")]


@pytest.mark.parametrize("kind", ["Hard", "Soft"])
def test_reset_or_reboot_line_is_on_flash_when_the_board_resets(tmp_path, kind):
    """The composition root's reboot path as on a board: a hard reset keeps only what is on
    the flash, so the event log must hold the ResetOrReboot line by then."""
    from chargepoint import app
    from chargepoint.platform.log import Log

    on_flash = []

    class Board(FakeBoard):
        def reboot(self, hard):
            with open(log.path(0)) as f:
                on_flash.append((hard, f.read()))

    ticks = FakeTicks()
    clock = Clock(ticks_ms=ticks)
    log = Log(str(tmp_path), clock)
    board = Board()
    transport = LoopbackTransport()
    (tmp_path / "bootguard").write_text('{"n": 3, "cause": null}')  # main.py's count
    cp = ChargePoint(board, transport, MemoryStore(), clock,
                     reboot=app._reboot(board, transport, log, str(tmp_path)),
                     services={"log": log})
    transport.deliver(json.dumps([2, "r1", "Reset", {"type": kind}]))
    for _ in range(50):
        ticks.advance(100)
        cp.loop()
    assert [hard for hard, _ in on_flash] == [kind == "Hard"]
    # a reboot asked for is no failed boot: the count main.py keeps starts again
    assert json.loads((tmp_path / "bootguard").read_text()) == {"n": 0, "c": 0, "cause": None}
    assert "security ResetOrReboot: Reset.req (%s)" % kind in on_flash[0][1]
    assert not transport.connected  # the link was closed first


def test_heartbeat_that_moves_the_clock_is_setting_system_time(rig):
    later = rig.cp.clock.wall() + 3600
    rig.cs.answers["Heartbeat"] = lambda p: {"currentTime": iso(later)}
    call(rig, "TriggerMessage", {"requestedMessage": "Heartbeat"})
    rig.step()
    assert events(rig)[-1] == ("SettingSystemTime", "Heartbeat: clock moved by +3600 s to %s"
                               % iso(later))
    rig.cs.answers["Heartbeat"] = lambda p: {"currentTime": iso(later + 5)}
    n = len(events(rig))
    call(rig, "TriggerMessage", {"requestedMessage": "Heartbeat"})
    rig.step()
    assert len(events(rig)) == n  # a few seconds of drift corrected: no event


def test_ntp_moving_the_rtc_is_setting_system_time(rig):
    rtc = [946684800]  # 2000-01-01: the ESP32's RTC after a power cut
    ntp = [T0]
    ticks = FakeTicks()

    def settime():
        ticks.advance(300)  # the round trip
        rtc[0] = ntp[0]

    sync = TimeSync(settime, ticks, lambda: rtc[0])
    rig.attach(timesync=lambda clock: sync)  # the security feature listens to its steps
    assert sync.ensure()
    rig.step()
    assert events(rig)[-1] == ("SettingSystemTime", "NTP: system clock moved by +%d s"
                               % (T0 - 946684800))
    n = len(events(rig))
    ticks.advance(86400000)
    rtc[0] += 86400
    ntp[0] = rtc[0] + 2  # a day later the sync corrects 2 s of drift: not an event
    assert sync.ensure()
    rig.step()
    assert len(events(rig)) == n


def test_tls_refusing_the_server_is_invalid_central_system_certificate(rig):
    status = {"failures": 0, "connects": 1, "last_error": None}
    rig.transport.status = status
    rig.step()
    status.update(failures=1, last_error="OSError: [Errno 104] ECONNRESET")
    rig.step()
    status.update(failures=2, last_error=REFUSED)
    rig.step()
    status.update(failures=3)  # the same verdict again at every backoff: told once
    rig.step()
    assert [e for e in events(rig) if e[0] == "InvalidCentralSystemCertificate"] == \
        [("InvalidCentralSystemCertificate", REFUSED)]
    status.update(connects=2)  # the link was up in between: a new refusal is news
    rig.step()
    status.update(failures=4)
    rig.step()
    assert len([e for e in events(rig) if e[0] == "InvalidCentralSystemCertificate"]) == 2


def test_server_refused_recognises_mbedtls_verdicts_only():
    assert security.server_refused(REFUSED)
    assert security.server_refused("ValueError: The certificate Common Name (CN) does not match "
                                   "with the expected CN")
    assert security.server_refused("OSError: (-9984, 'X509 - Certificate verification failed, "
                                   "e.g. CRL, CA or signature check failed')")
    for other in (None, "", "OSError: timed out", "OSError: [Errno 111] ECONNREFUSED",
                  "MQTTException: 5"):
        assert not security.server_refused(other)


def test_change_of_a_security_key_is_reconfiguration(rig):
    rig.cp.config.declare("CpoName", STR, "")  # as a module that had it would
    assert call(rig, "ChangeConfiguration", {"key": "CpoName", "value": "ACME"}) == \
        {"status": "Accepted"}
    assert call(rig, "ChangeConfiguration", {"key": "HeartbeatInterval", "value": "60"}) == \
        {"status": "Accepted"}
    rig.step()
    assert [e for e in events(rig) if e[0] == "ReconfigurationOfSecurityParameters"] == \
        [("ReconfigurationOfSecurityParameters", "ChangeConfiguration CpoName")]


# -- ExtendedTriggerMessage ------------------------------------------------------------------


def trigger(rig, what, connector=None):
    p = {"requestedMessage": what}
    if connector is not None:
        p["connectorId"] = connector
    jsonschema.validate(p, schema("ExtendedTriggerMessage"))
    n = len(rig.cs.calls)
    answer = rig.send("ExtendedTriggerMessage", p)[2]
    rig.step()
    return answer["status"], [a for a, _ in rig.cs.calls[n:]]


def test_extended_trigger_sends_the_core_messages(rig):
    status, sent = trigger(rig, "BootNotification")
    assert status == "Accepted" and sent[0] == "BootNotification"
    assert trigger(rig, "Heartbeat") == ("Accepted", ["Heartbeat"])
    assert trigger(rig, "StatusNotification", 1) == ("Accepted", ["StatusNotification"])
    assert trigger(rig, "MeterValues", 1) == ("Accepted", ["MeterValues"])
    assert rig.payloads("MeterValues")[-1]["meterValue"][0]["sampledValue"][0]["context"] == \
        "Trigger"
    assert trigger(rig, "StatusNotification", 2) == ("Rejected", [])
    assert trigger(rig, "Heartbeat", -1) == ("Rejected", [])


def test_extended_trigger_log_status_is_idle_without_a_get_log_under_way(rig):
    assert trigger(rig, "LogStatusNotification") == ("Accepted", ["LogStatusNotification"])
    assert rig.payloads("LogStatusNotification") == [{"status": "Idle"}]


def test_extended_trigger_firmware_status_is_the_signed_one_where_updates_are(rig):
    # without an updater there is no FirmwareManagement: nobody offers it
    assert trigger(rig, "FirmwareStatusNotification") == ("NotImplemented", [])

    class Updater:
        version = "0.1.0"

        def outcome(self):
            return None
    rig.attach(updater=lambda clock: Updater())
    assert trigger(rig, "FirmwareStatusNotification") == \
        ("Accepted", ["SignedFirmwareStatusNotification"])
    assert rig.payloads("SignedFirmwareStatusNotification") == [{"status": "Idle"}]


def test_extended_trigger_log_status_is_the_get_log_under_way(rig, tmp_path):
    threads = []  # the upload's thread never runs: the GetLog stays under way
    attach(rig, tmp_path, threads.append)
    msg = rig.send("GetLog", {"logType": "SecurityLog", "requestId": 7,
                              "log": {"remoteLocation": "https://csms.example/logs/"}})
    assert msg[2]["status"] == "Accepted"
    trigger(rig, "LogStatusNotification")
    assert rig.payloads("LogStatusNotification")[-1] == {"status": "Uploading", "requestId": 7}


def test_extended_trigger_sign_certificate_without_the_identity_feature_is_not_implemented(
        rig):
    assert rig.cp.identity is None  # (no "charge_point_id" service given)
    assert trigger(rig, "SignChargePointCertificate") == ("NotImplemented", [])


def test_extended_trigger_unknown_message_is_a_property_violation(rig):
    msg = rig.send("ExtendedTriggerMessage", {"requestedMessage": "DiagnosticsStatusNotification"})
    assert msg[0] == 4 and msg[2] == "PropertyConstraintViolation"


# -- certificate management ----------------------------------------------------------------


def install(rig, cert, kind=CENTRAL):
    return call(rig, "InstallCertificate", {"certificateType": kind,
                                            "certificate": pem(cert)})["status"]


def installed(rig, kind=CENTRAL):
    return call(rig, "GetInstalledCertificateIds", {"certificateType": kind})


def delete(rig, ids):
    return call(rig, "DeleteCertificate", {"certificateHashData": ids})["status"]


def test_install_certificate_is_listed_persisted_and_trusted_from_the_next_boot(rig, roots):
    assert installed(rig) == {"status": "NotFound"}
    assert install(rig, roots["a"][0]) == "Accepted"
    assert install(rig, roots["rsa"][0]) == "Accepted"
    assert installed(rig) == {"status": "Accepted", "certificateHashData": [
        expected_ids(roots["a"][0]), expected_ids(roots["rsa"][0])]}
    assert installed(rig, MANUFACTURER) == {"status": "NotFound"}
    rig.power_cut()
    rig.step()
    assert len(installed(rig)["certificateHashData"]) == 2
    assert certificates.roots(rig.store) == [roots["a"][0].public_bytes(DER),
                                         roots["rsa"][0].public_bytes(DER)]
    assert certificates.roots(rig.store, MANUFACTURER) == []


def test_install_and_delete_are_reconfiguration_events(rig, roots):
    install(rig, roots["a"][0])
    install(rig, roots["b"][0])
    delete(rig, expected_ids(roots["a"][0]))
    rig.step()
    assert [e for e in events(rig) if e[0] == "ReconfigurationOfSecurityParameters"] == [
        ("ReconfigurationOfSecurityParameters", "InstallCertificate %s serial a1" % CENTRAL),
        ("ReconfigurationOfSecurityParameters",
         "InstallCertificate %s serial 8000000000000001" % CENTRAL),
        ("ReconfigurationOfSecurityParameters", "DeleteCertificate %s serial a1" % CENTRAL)]


def test_install_the_same_certificate_twice_keeps_one(rig, roots):
    assert install(rig, roots["a"][0]) == "Accepted"
    assert install(rig, roots["a"][0]) == "Accepted"
    assert len(installed(rig)["certificateHashData"]) == 1


def test_manufacturer_roots_are_kept_apart(rig, roots):
    assert install(rig, roots["b"][0], MANUFACTURER) == "Accepted"
    assert installed(rig) == {"status": "NotFound"}
    assert installed(rig, MANUFACTURER)["certificateHashData"] == [expected_ids(roots["b"][0])]
    assert certificates.roots(rig.store) == []
    assert certificates.roots(rig.store, MANUFACTURER) == [roots["b"][0].public_bytes(DER)]


@pytest.mark.parametrize("name", ["leaf", "intermediate", "expired", "future",
                                  "no_constraints"])
def test_install_rejects_what_cannot_be_a_root(rig, roots, name):
    assert install(rig, roots[name][0]) == "Rejected"
    assert installed(rig) == {"status": "NotFound"} and not rig.store.names("cert.")


def test_install_rejects_malformed_or_several_certificates(rig, roots):
    body = pem(roots["a"][0])
    for text in ("not a certificate", body.replace("MI", "@@", 1)[:200] + "\n-----END "
                 "CERTIFICATE-----", body[:len(body) // 2], body + body):
        assert call(rig, "InstallCertificate", {"certificateType": CENTRAL,
                                                "certificate": text}) == {"status": "Rejected"}
    assert installed(rig) == {"status": "NotFound"}


def test_install_rejects_beyond_certificate_store_max_length(rig, roots):
    keys = call(rig, "GetConfiguration", {"key": ["CertificateStoreMaxLength"]})
    assert keys["configurationKey"] == [{"key": "CertificateStoreMaxLength", "readonly": True,
                                         "value": "4"}]
    for i in range(4):
        assert install(rig, make_cert("Root %d" % i)[0]) == "Accepted"
    assert install(rig, roots["a"][0]) == "Rejected"
    assert call(rig, "ChangeConfiguration", {"key": "CertificateStoreMaxLength",
                                             "value": "9"}) == {"status": "Rejected"}


def test_install_rejects_an_unknown_certificate_type(rig, roots):
    msg = rig.send("InstallCertificate", {"certificateType": "V2GRootCertificate",
                                          "certificate": pem(roots["a"][0])})
    assert msg[0] == 4 and msg[2] == "PropertyConstraintViolation"


def test_delete_certificate(rig, roots):
    install(rig, roots["a"][0])
    install(rig, roots["b"][0])
    ids = expected_ids(roots["b"][0])
    shouted = dict(ids, issuerNameHash=ids["issuerNameHash"].upper(),
                   serialNumber="00" + ids["serialNumber"].upper())
    assert delete(rig, shouted) == "Accepted"
    assert delete(rig, ids) == "NotFound"
    assert installed(rig)["certificateHashData"] == [expected_ids(roots["a"][0])]
    assert certificates.roots(rig.store) == [roots["a"][0].public_bytes(DER)]
    assert rig.store.names("cert.") == ["cert.1"]


def test_delete_unknown_or_other_hash_algorithm_is_not_found(rig, roots):
    install(rig, roots["a"][0])
    install(rig, roots["b"][0])
    assert delete(rig, expected_ids(roots["rsa"][0])) == "NotFound"
    assert delete(rig, dict(expected_ids(roots["a"][0]), hashAlgorithm="SHA384")) == "NotFound"


def test_delete_refuses_the_last_central_system_root(rig, roots):
    install(rig, roots["a"][0])
    install(rig, roots["b"][0], MANUFACTURER)
    assert delete(rig, expected_ids(roots["a"][0])) == "Failed"
    assert delete(rig, expected_ids(roots["b"][0])) == "Accepted"  # not a TLS root
    assert len(installed(rig)["certificateHashData"]) == 1


def test_config_ca_is_listed_and_cannot_be_deleted(rig, roots):
    factory = [roots["rsa"][0].public_bytes(DER), roots["leaf"][0].public_bytes(DER)]
    rig.attach(ca_certificates=lambda clock: lambda: factory)
    assert installed(rig)["certificateHashData"] == [expected_ids(roots["rsa"][0])]
    assert install(rig, roots["rsa"][0]) == "Accepted"  # trusted already: nothing stored
    assert not rig.store.names("cert.")
    assert delete(rig, expected_ids(roots["rsa"][0])) == "Failed"
    install(rig, roots["a"][0])
    assert delete(rig, expected_ids(roots["a"][0])) == "Accepted"  # config.json's remains
    assert installed(rig)["certificateHashData"] == [expected_ids(roots["rsa"][0])]


def test_security_actions_not_done_here_are_not_supported(rig):
    for action, payload in (("SignedUpdateFirmware", {}), ("CertificateSigned", {}),
                            ("GetLog", {})):
        msg = rig.send(action, payload)
        if rig.cp._route(action) is None:  # another module may route it
            assert msg[0] == 4 and msg[2] == "NotSupported", action


# -- on MicroPython ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stock_micropython():
    from tools import twin

    exe = twin.ensure(stock=True)  # no code of ours frozen in: lib/ is imported as it is
    env = dict(os.environ, MICROPYPATH=".frozen:" + os.path.join(ROOT, "lib"))

    def run(*args):
        r = subprocess.run([exe, "-X", "heapsize=110000",
                            os.path.join(ROOT, "tests", "mpy", "security_probe.py")]
                           + [str(a) for a in args],
                           capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
        assert r.returncode == 0, r.stdout + r.stderr
        return json.loads(r.stdout.splitlines()[-1])

    return run


def test_x509_on_micropython_reads_what_cpython_computes(stock_micropython, roots, tmp_path):
    names = ["a", "b", "rsa", "intermediate", "leaf", "no_constraints"]
    paths = []
    for name in names:
        path = tmp_path / (name + ".der")
        path.write_bytes(roots[name][0].public_bytes(DER))
        paths.append(path)
    got = stock_micropython("x509", *paths)
    for name, parsed in zip(names, got):
        cert = roots[name][0]
        assert parsed["ids"]["serialNumber"] == "%x" % cert.serial_number
        assert parsed["ids"]["issuerNameHash"] == expected_ids(cert)["issuerNameHash"]
        assert parsed["not_after"] == int(cert.not_valid_after_utc.timestamp())
        assert parsed["root"] == (name in ("a", "b", "rsa", "no_constraints"))
        assert parsed["ca"] == (name not in ("leaf", "no_constraints"))
    assert [p["ids"] for p in got[:3]] == [expected_ids(roots[n][0]) for n in names[:3]]
    assert [p["key_type"] for p in got[:3]] == ["EC", "EC", "RSA"]


class TlsServer:
    """A TLS server on loopback presenting `cert`; records whether a client got through."""

    def __init__(self, cert, key):
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.got = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        conn, _ = self.sock.accept()
        conn.settimeout(10)
        try:
            with self.context.wrap_socket(conn, server_side=True) as tls:
                self.got.append(tls.recv(4))
        except (OSError, ssl.SSLError):
            pass  # the client refused us

    def close(self):
        self.thread.join(15)
        self.sock.close()


def test_tls_trusts_the_config_ca_plus_the_installed_roots(stock_micropython, tmp_path):
    """The server's certificate chains to a root that is not config.json's CA: refused, and
    taken for InvalidCentralSystemCertificate; installed, the handshake gets through."""
    from tools import certs

    ours, theirs = str(tmp_path / "ours"), str(tmp_path / "theirs")
    ca, _ = certs.make_ca(ours)
    cert, key = certs.issue(ours, "CP001")
    other_ca, _ = certs.make_ca(theirs, "Another Central System CA")
    server_cert, server_key = certs.issue(theirs, "server", client=False)
    with open(other_ca, "rb") as f:
        root = x509.pem_blocks(f.read())[0]
    installed_path = tmp_path / "installed.der"
    installed_path.write_bytes(root)
    decoy = tmp_path / "decoy.der"
    decoy.write_bytes(make_cert("Unrelated root")[0].public_bytes(DER))
    garbage = tmp_path / "garbage.der"  # refused by mbedTLS: left out, the rest still count
    garbage.write_bytes(b"\x30\x03\x02\x01\x00")

    server = TlsServer(server_cert, server_key)
    refused = stock_micropython("tls", server.port, ca, cert, key, decoy)
    server.close()
    assert refused["ok"] is False and refused["refused"] is True, refused
    assert "not correctly signed by the trusted CA" in refused["error"]
    assert not server.got

    server = TlsServer(server_cert, server_key)
    through = stock_micropython("tls", server.port, ca, cert, key, garbage, decoy,
                                installed_path)
    server.close()
    assert through == {"ok": True} and server.got == [b"ping"]
