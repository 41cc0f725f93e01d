"""Configuration keys: GetConfiguration, ChangeConfiguration, persistence, validators."""
from conftest import Rig

CORE_KEYS = [
    "AllowOfflineTxForUnknownId", "AuthorizationCacheEnabled", "AuthorizeRemoteTxRequests",
    "ClockAlignedDataInterval", "ConnectionTimeOut", "ConnectorPhaseRotation",
    "GetConfigurationMaxKeys", "HeartbeatInterval", "LocalAuthorizeOffline",
    "LocalPreAuthorize", "MeterValuesAlignedData", "MeterValuesSampledData",
    "MeterValueSampleInterval", "MinimumStatusDuration", "NumberOfConnectors", "ResetRetries",
    "StopTransactionOnEVSideDisconnect", "StopTransactionOnInvalidId", "StopTxnAlignedData",
    "StopTxnSampledData", "SupportedFeatureProfiles", "TransactionMessageAttempts",
    "TransactionMessageRetryInterval", "UnlockConnectorOnEVSideDisconnect",
]


def keys(msg):
    return {k["key"]: k for k in msg[2]["configurationKey"]}


def test_all_core_keys_present(rig):
    got = keys(rig.send("GetConfiguration", {}))
    missing = [k for k in CORE_KEYS if k not in got]
    assert missing == []
    assert got["NumberOfConnectors"] == {"key": "NumberOfConnectors", "readonly": True,
                                         "value": "1"}
    assert got["SupportedFeatureProfiles"]["value"] == \
        "Core,RemoteTrigger,SmartCharging,Reservation"
    assert got["SupportedFeatureProfilesMaxLength"]["value"] == "4"
    assert got["StopTransactionOnInvalidId"]["value"] == "true"


def test_listed_keys_and_unknown_keys(rig):
    msg = rig.send("GetConfiguration", {"key": ["HeartbeatInterval", "NoSuchKey"]})
    assert msg[2] == {"configurationKey": [{"key": "HeartbeatInterval", "readonly": False,
                                            "value": "300"}],
                      "unknownKey": ["NoSuchKey"]}


def test_too_many_keys_requested(rig):
    msg = rig.send("GetConfiguration", {"key": ["K%d" % i for i in range(51)]})
    assert msg[:3] == [4, msg[1], "OccurenceConstraintViolation"]


def test_change_accepted_applies_and_persists():
    r = Rig()
    r.step()
    assert r.send("ChangeConfiguration", {"key": "MeterValueSampleInterval", "value": "15"})[2] \
        == {"status": "Accepted"}
    assert r.cp.config.get("MeterValueSampleInterval") == 15
    r.power_cut()
    assert r.cp.config.get("MeterValueSampleInterval") == 15


def test_change_read_only_rejected(rig):
    assert rig.send("ChangeConfiguration", {"key": "NumberOfConnectors", "value": "2"})[2] == \
        {"status": "Rejected"}


def test_change_unknown_not_supported(rig):
    assert rig.send("ChangeConfiguration", {"key": "Nope", "value": "2"})[2] == \
        {"status": "NotSupported"}


def test_change_bad_values_rejected(rig):
    for key, value in [("HeartbeatInterval", "often"), ("HeartbeatInterval", "-5"),
                       ("StopTransactionOnInvalidId", "maybe"),
                       ("MeterValuesSampledData", "Energy.Active.Import.Register,Temperature"),
                       ("ConnectorPhaseRotation", "1.XYZ"), ("ConnectionTimeOut", "0"),
                       ("TransactionMessageAttempts", "0")]:
        assert rig.send("ChangeConfiguration", {"key": key, "value": value})[2] == \
            {"status": "Rejected"}, key
    assert rig.cp.config.get("HeartbeatInterval") == 300


def test_boolean_and_list_values_normalised(rig):
    rig.send("ChangeConfiguration", {"key": "LocalPreAuthorize", "value": "TRUE"})
    rig.send("ChangeConfiguration", {"key": "MeterValuesSampledData",
                                     "value": "Voltage, Current.Import"})
    got = keys(rig.send("GetConfiguration", {"key": ["LocalPreAuthorize",
                                                      "MeterValuesSampledData"]}))
    assert got["LocalPreAuthorize"]["value"] == "true"
    assert got["MeterValuesSampledData"]["value"] == "Voltage,Current.Import"


def test_reboot_required_key_applies_after_reboot():
    from chargepoint.ocpp.config import INT, REBOOT, Config
    from tools.fakes import MemoryStore
    store = MemoryStore()
    c = Config(store)
    c.declare("WebSocketPingInterval", INT, 60, REBOOT)
    assert c.change("WebSocketPingInterval", "30") == "RebootRequired"
    assert c.get("WebSocketPingInterval") == 60
    c2 = Config(MemoryStore(store.files))
    c2.declare("WebSocketPingInterval", INT, 60, REBOOT)
    assert c2.get("WebSocketPingInterval") == 30


def test_a_key_declared_again_takes_its_new_kind_flags_and_validator():
    from chargepoint.ocpp.config import INT, RO, SECRET, STR, Config
    from tools.fakes import MemoryStore
    c = Config(MemoryStore())
    c.declare("K", INT, 5, 0, lambda v: v < 10)
    assert c.change("K", "12") == "Rejected" and c.change("K", "7") == "Accepted"
    c.declare("K", INT, 5)  # no validator now
    assert c.change("K", "12") == "Accepted" and c.get("K") == 12
    c.declare("K", STR, "x", RO)
    assert c.change("K", "y") == "Rejected"
    assert c.wire("K") == {"key": "K", "readonly": True, "value": "x"}
    c.declare("S", STR, "", SECRET)
    assert not c.has("S") and "S" not in c.names() and c.change("S", "z") == "Accepted"


def test_heartbeat_interval_from_boot_and_heartbeat_sent_on_time():
    r = Rig()
    r.cs.answers["BootNotification"] = {"status": "Accepted",
                                        "currentTime": "2026-11-21T12:00:00Z", "interval": 120}
    r.step()
    assert r.cp.config.get("HeartbeatInterval") == 120
    r.run(119)
    assert r.calls("Heartbeat") == []
    r.run(2)
    assert len(r.calls("Heartbeat")) == 1


def test_heartbeat_sets_clock():
    r = Rig()
    r.step()
    r.cs.answers["Heartbeat"] = {"currentTime": "2030-01-01T00:00:00Z"}
    r.run(301)
    from chargepoint.ocpp.timestamps import iso
    assert iso(r.cp.clock.wall()).startswith("2030-01-01T00:0")


def test_clock_takes_the_central_systems_time_to_the_millisecond():
    from chargepoint.ocpp.timestamps import iso
    r = Rig()
    r.cs.answers["BootNotification"] = {"status": "Accepted", "interval": 300,
                                        "currentTime": "2026-11-21T12:00:00.900Z"}
    r.step()
    assert iso(r.cp.clock.wall()) == "2026-11-21T12:00:00Z"
    r.ticks.advance(99)
    assert r.cp.clock.stamp() == "2026-11-21T12:00:00Z"
    r.ticks.advance(1)  # 1.0 s after the Central System's 12:00:00
    assert r.cp.clock.stamp() == "2026-11-21T12:00:01Z"


def test_clock_is_integer_and_exact_over_days_of_rebasing():
    """No floats (single precision on the ESP32) and no drift from the hourly re-base."""
    from chargepoint.ocpp.timestamps import parse_iso
    from chargepoint.platform.clock import Clock
    from tools.fakes import FakeTicks
    ticks = FakeTicks()
    clock = Clock(ticks_ms=ticks)
    marker = clock.stamp()
    assert marker.startswith("@")
    ticks.advance(1000)
    clock.set_wall(*parse_iso("2026-11-21T12:00:00.900Z", True))
    assert clock.resolve(marker) == "2026-11-21T11:59:59Z"  # 1 s before 12:00:00.9
    start = parse_iso("2026-11-21T12:00:00Z")
    for _ in range(10 * 24 * 60):  # ten days in one-minute steps, keep() every step
        ticks.advance(60000)
        clock.keep()
        assert isinstance(clock.wall(), int)
    assert clock.wall() == start + 10 * 86400  # 12:00:00.9 + 10 days
    ticks.advance(99)
    assert clock.wall() == start + 10 * 86400
    ticks.advance(1)
    assert clock.wall() == start + 10 * 86400 + 1


def test_parse_iso_fractions_and_offsets():
    from chargepoint.ocpp.timestamps import parse_iso
    base = parse_iso("2026-11-21T12:00:00Z")
    assert isinstance(base, int) and parse_iso("2026-11-21T12:00:00.25Z") == base
    assert parse_iso("2026-11-21T12:00:00.25Z", True) == (base, 250)
    assert parse_iso("2026-11-21T12:00:00.123456+00:00", True) == (base, 123)
    assert parse_iso("2026-11-21T13:00:00.5+01:00", True) == (base, 500)
    assert parse_iso("2026-11-21T12:00:00-02:30") == base + 9000
    for bad in ("2026-11-21T12:00:00.Z", "2026-11-21T12:00:00.5X", "2026-13-01T00:00:00Z",
                "2026-11-21 12:00", 20261121):
        assert parse_iso(bad) is None, bad
