"""Local Authorization List Management: SendLocalList, GetLocalListVersion, the list on flash."""
import os

import jsonschema
import pytest

from conftest import T0, Rig, schema
from chargepoint.model import listupdate
from chargepoint.model.chargepoint import ChargePoint
from chargepoint.ocpp.timestamps import iso
from chargepoint.platform.clock import Clock
from chargepoint.platform.store import FileStore

HEADER = 8
RECORD = 45


class FlashRig(Rig):
    """The conftest rig on a FileStore in a tmp folder: the profile is there, as on a board."""

    def __init__(self, folder, **kw):
        self.folder = str(folder)
        super().__init__(services={"folder": self.folder}, **kw)

    def boot(self):
        self.store = FileStore(self.folder)
        self.transport.sent.clear()
        self.transport.inbox.clear()
        self.cp = ChargePoint(self.board, self.transport, self.store, Clock(ticks_ms=self.ticks),
                              reboot=self.reboots.append, services=self.services)
        return self.cp

    @property
    def path(self):
        return os.path.join(self.folder, "locallist")


@pytest.fixture
def flash(tmp_path):
    r = FlashRig(tmp_path / "store")
    r.step()  # registered: the wall clock is T0 + 1 s
    return r


def card(id_tag, status="Accepted", expiry=None, parent=None):
    info = {"status": status}
    if expiry is not None:
        info["expiryDate"] = iso(expiry)
    if parent is not None:
        info["parentIdTag"] = parent
    return {"idTag": id_tag, "idTagInfo": info}


def payload(version, update_type, entries=None):
    p = {"listVersion": version, "updateType": update_type}
    if entries is not None:
        p["localAuthorizationList"] = entries
    return p


def send_list(rig, version, update_type, entries=None):
    """SendLocalList as the Central System sends it (checked against the official schema);
    the charge point's answer (its schema is checked by the rig)."""
    p = payload(version, update_type, entries)
    jsonschema.validate(p, schema("SendLocalList"))
    msg = rig.send("SendLocalList", p)
    assert msg[0] == 3, msg
    return msg[2]


def list_version(rig):
    jsonschema.validate({}, schema("GetLocalListVersion"))
    msg = rig.send("GetLocalListVersion", {})
    assert msg[0] == 3, msg
    return msg[2]["listVersion"]


def lookup(rig, id_tag):
    return rig.cp.local_list.lookup(id_tag)


def keys_on_flash(rig):
    with open(rig.path, "rb") as f:
        data = f.read()
    return [data[i:i + 20].rstrip(b"\0") for i in range(HEADER, len(data), RECORD)]


def fill(rig, n, version=1):
    """A Full list of n cards straight through the list (no 24-entry message limit)."""
    tags = ["%08X" % (i * 2654435761 & 0xFFFFFFFF) for i in range(n)]
    assert listupdate.update(rig.cp.local_list, [card(t) for t in tags], version,
                             True) == "Accepted"
    return tags


# -- GetLocalListVersion -------------------------------------------------------------------


def test_get_local_list_version_is_zero_when_empty(flash):
    assert list_version(flash) == 0
    assert lookup(flash, "04A1B2C3D4") is None


def test_get_local_list_version_is_minus_one_when_disabled(flash):
    assert send_list(flash, 3, "Full", [card("AAA")]) == {"status": "Accepted"}
    assert flash.send("ChangeConfiguration", {"key": "LocalAuthListEnabled",
                                              "value": "false"})[2] == {"status": "Accepted"}
    assert list_version(flash) == -1


# -- SendLocalList: Full ---------------------------------------------------------------------


def test_full_update_sets_the_list_and_its_version(flash):
    assert send_list(flash, 5, "Full", [card("BBB"), card("AAA", "Blocked")]) == \
        {"status": "Accepted"}
    assert list_version(flash) == 5
    assert lookup(flash, "AAA") == ("Blocked", None)
    assert lookup(flash, "BBB") == ("Accepted", None)
    assert keys_on_flash(flash) == [b"AAA", b"BBB"]


def test_full_update_replaces_the_whole_list(flash):
    send_list(flash, 5, "Full", [card("AAA"), card("BBB")])
    assert send_list(flash, 2, "Full", [card("CCC")]) == {"status": "Accepted"}  # any version
    assert list_version(flash) == 2
    assert lookup(flash, "AAA") is None and lookup(flash, "BBB") is None
    assert lookup(flash, "CCC") == ("Accepted", None)


def test_full_update_with_no_entries_empties_the_list(flash):
    send_list(flash, 5, "Full", [card("AAA")])
    assert send_list(flash, 6, "Full") == {"status": "Accepted"}
    assert list_version(flash) == 0  # OCPP 1.6: version 0 means the list is empty
    assert lookup(flash, "AAA") is None
    assert os.path.getsize(flash.path) == HEADER


def test_full_entry_without_id_tag_info_fails(flash):
    send_list(flash, 1, "Full", [card("AAA")])
    assert send_list(flash, 2, "Full", [card("BBB"), {"idTag": "CCC"}]) == {"status": "Failed"}
    assert list_version(flash) == 1
    assert lookup(flash, "AAA") == ("Accepted", None) and lookup(flash, "BBB") is None


def test_non_empty_list_with_version_below_one_fails(flash):
    assert send_list(flash, 0, "Full", [card("AAA")]) == {"status": "Failed"}
    assert send_list(flash, -1, "Full", [card("AAA")]) == {"status": "Failed"}
    assert list_version(flash) == 0 and lookup(flash, "AAA") is None


# -- SendLocalList: Differential ---------------------------------------------------------------


def test_differential_adds_updates_and_removes(flash):
    send_list(flash, 1, "Full", [card("AAA"), card("BBB"), card("DDD")])
    answer = send_list(flash, 2, "Differential", [
        card("CCC", parent="FLEET"),  # added
        card("AAA", "Blocked"),  # updated
        {"idTag": "DDD"},  # no idTagInfo: removed
        {"idTag": "ZZZ"},  # removing what is not there changes nothing
    ])
    assert answer == {"status": "Accepted"}
    assert list_version(flash) == 2
    assert lookup(flash, "AAA") == ("Blocked", None)
    assert lookup(flash, "BBB") == ("Accepted", None)
    assert lookup(flash, "CCC") == ("Accepted", "FLEET")
    assert lookup(flash, "DDD") is None
    assert keys_on_flash(flash) == [b"AAA", b"BBB", b"CCC"]


def test_differential_with_the_same_version_is_version_mismatch(flash):
    send_list(flash, 4, "Full", [card("AAA")])
    assert send_list(flash, 4, "Differential", [card("BBB")]) == {"status": "VersionMismatch"}
    assert lookup(flash, "BBB") is None and list_version(flash) == 4


def test_differential_with_a_lower_version_is_version_mismatch(flash):
    send_list(flash, 4, "Full", [card("AAA")])
    assert send_list(flash, 3, "Differential", [{"idTag": "AAA"}]) == \
        {"status": "VersionMismatch"}
    assert lookup(flash, "AAA") == ("Accepted", None) and list_version(flash) == 4


def test_differential_on_an_empty_list_needs_version_above_zero(flash):
    assert send_list(flash, 0, "Differential", [card("AAA")]) == {"status": "VersionMismatch"}
    assert send_list(flash, 1, "Differential", [card("AAA")]) == {"status": "Accepted"}
    assert list_version(flash) == 1 and lookup(flash, "AAA") == ("Accepted", None)


def test_differential_removing_every_entry_resets_the_version(flash):
    send_list(flash, 7, "Full", [card("AAA"), card("BBB")])
    assert send_list(flash, 8, "Differential", [{"idTag": "AAA"}, {"idTag": "bbb"}]) == \
        {"status": "Accepted"}
    assert list_version(flash) == 0
    assert send_list(flash, 1, "Differential", [card("CCC")]) == {"status": "Accepted"}


def test_the_last_entry_for_an_id_tag_in_one_message_wins(flash):
    send_list(flash, 1, "Full", [card("AAA", "Blocked"), card("AAA", "Invalid"), card("AAA")])
    assert lookup(flash, "AAA") == ("Accepted", None)
    send_list(flash, 2, "Differential", [card("AAA", "Blocked"), {"idTag": "AAA"}])
    assert lookup(flash, "AAA") is None
    assert keys_on_flash(flash) == []


# -- limits ------------------------------------------------------------------------------------


def test_more_entries_than_send_local_list_max_length_fails(flash):
    entries = [card("CARD%02d" % i) for i in range(25)]
    assert send_list(flash, 1, "Full", entries) == {"status": "Failed"}
    assert send_list(flash, 1, "Differential", entries) == {"status": "Failed"}
    assert list_version(flash) == 0
    assert send_list(flash, 1, "Full", entries[:24]) == {"status": "Accepted"}
    assert list_version(flash) == 1


def test_total_above_local_auth_list_max_length_fails(flash):
    tags = fill(flash, 1000)
    assert send_list(flash, 2, "Differential", [card("NEWCARD")]) == {"status": "Failed"}
    assert lookup(flash, "NEWCARD") is None and list_version(flash) == 1
    # one out, one in: still 1000
    assert send_list(flash, 2, "Differential", [{"idTag": tags[0]}, card("NEWCARD")]) == \
        {"status": "Accepted"}
    assert lookup(flash, "NEWCARD") == ("Accepted", None) and lookup(flash, tags[0]) is None
    assert os.path.getsize(flash.path) == HEADER + 1000 * RECORD


def test_id_tag_of_more_than_20_bytes_fails(flash):
    # 20 characters (the schema's limit) but 40 bytes of UTF-8: no room in a record
    assert send_list(flash, 1, "Full", [card("AAA"), card("\u00e9" * 20)]) == {"status": "Failed"}
    assert send_list(flash, 1, "Full", [card("AAA", parent="\u00e9" * 11)]) == \
        {"status": "Failed"}
    assert list_version(flash) == 0


def test_a_failed_write_leaves_the_old_list(flash, monkeypatch):
    send_list(flash, 1, "Full", [card("AAA")])

    def rename(src, dst):  # as on a full medium
        raise OSError(28, "no space left on device")

    # (the update's module is imported for the request: os is patched where it finds it)
    monkeypatch.setattr(os, "rename", rename)
    assert send_list(flash, 2, "Differential", [card("BBB")]) == {"status": "Failed"}
    assert "locallist.tmp" not in os.listdir(flash.folder)
    monkeypatch.undo()
    assert list_version(flash) == 1 and lookup(flash, "BBB") is None
    assert lookup(flash, "AAA") == ("Accepted", None)


# -- disabled ----------------------------------------------------------------------------------


def test_disabled_list_refuses_updates_and_is_not_consulted(flash):
    send_list(flash, 3, "Full", [card("AAA")])
    flash.send("ChangeConfiguration", {"key": "LocalAuthListEnabled", "value": "false"})
    assert send_list(flash, 4, "Full", [card("BBB")]) == {"status": "NotSupported"}
    assert lookup(flash, "AAA") is None
    flash.send("ChangeConfiguration", {"key": "LocalAuthListEnabled", "value": "true"})
    assert list_version(flash) == 3
    assert lookup(flash, "AAA") == ("Accepted", None) and lookup(flash, "BBB") is None


# -- lookup ------------------------------------------------------------------------------------


def test_lookup_past_expiry_is_expired(flash):
    now = flash.cp.clock.wall()
    assert now == T0 + 1
    send_list(flash, 1, "Full", [card("OLD", expiry=now - 1), card("NOW", expiry=now),
                                 card("NEW", expiry=now + 3600, parent="FLEET"),
                                 card("BLOCKED", "Blocked", expiry=now - 1)])
    assert lookup(flash, "OLD") == ("Expired", None)
    assert lookup(flash, "NOW") == ("Accepted", None)
    assert lookup(flash, "NEW") == ("Accepted", "FLEET")
    assert lookup(flash, "BLOCKED") == ("Expired", None)
    flash.ticks.advance(3601 * 1000)
    assert lookup(flash, "NEW") == ("Expired", "FLEET")


def test_lookup_ignores_expiry_until_the_clock_is_set(tmp_path):
    r = FlashRig(tmp_path / "store", online=False)
    r.step()
    assert r.cp.clock.wall() is None
    listupdate.update(r.cp.local_list, [card("OLD", expiry=T0 - 86400)], 1, True)
    assert lookup(r, "OLD") == ("Accepted", None)


def test_lookup_is_case_insensitive_and_keeps_the_parent_as_sent(flash):
    send_list(flash, 1, "Full", [card("04a1b2c3d4", parent="Fleet-7"),
                                 card("x" * 20, parent="P" * 20)])
    assert lookup(flash, "04A1B2C3D4") == ("Accepted", "Fleet-7")
    assert lookup(flash, "04a1B2c3D4") == ("Accepted", "Fleet-7")
    assert lookup(flash, "X" * 20) == ("Accepted", "P" * 20)
    assert lookup(flash, "X" * 21) is None
    assert lookup(flash, "04A1B2C3D") is None and lookup(flash, "") is None


def test_lookup_finds_every_entry_of_a_1000_entry_list(flash):
    tags = fill(flash, 1000)
    assert os.path.getsize(flash.path) == HEADER + 1000 * RECORD
    assert keys_on_flash(flash) == sorted(t.encode() for t in tags)
    assert [lookup(flash, t) for t in tags] == [("Accepted", None)] * 1000
    assert lookup(flash, "00000001") is None and lookup(flash, "FFFFFFFF") is None


def test_record_layout(flash):
    send_list(flash, 0x01020304, "Full", [card("ab", "ConcurrentTx", expiry=T0 + 60,
                                                parent="Pa")])
    with open(flash.path, "rb") as f:
        data = f.read()
    expiry = (T0 + 60).to_bytes(4, "little")
    assert data == (b"LAL1" + bytes([4, 3, 2, 1]) + b"AB" + bytes(18) + bytes([4]) + expiry
                    + b"Pa" + bytes(18))


# -- persistence -------------------------------------------------------------------------------


def test_list_and_version_survive_a_power_cut(flash):
    send_list(flash, 9, "Full", [card("AAA", parent="FLEET")])
    flash.power_cut()
    flash.step()
    assert list_version(flash) == 9
    assert lookup(flash, "AAA") == ("Accepted", "FLEET")


def test_a_damaged_file_counts_as_no_list(flash):
    send_list(flash, 9, "Full", [card("AAA")])
    with open(flash.path, "ab") as f:
        f.write(b"\0\0\0")  # no longer header + whole records
    flash.power_cut()
    flash.step()
    assert list_version(flash) == 0 and lookup(flash, "AAA") is None
    assert send_list(flash, 1, "Full", [card("BBB")]) == {"status": "Accepted"}
    assert lookup(flash, "BBB") == ("Accepted", None)


def test_a_stale_send_local_list_is_carried_out(flash):
    p = payload(2, "Full", [card("AAA")])
    jsonschema.validate(p, schema("SendLocalList"))
    assert flash.send("SendLocalList", p, stale=True)[2] == {"status": "Accepted"}
    assert lookup(flash, "AAA") == ("Accepted", None)


# -- malformed requests ------------------------------------------------------------------------


AAA_WITH = {"listVersion": 1, "updateType": "Full"}


@pytest.mark.parametrize("bad,code", [
    ({"updateType": "Full"}, "OccurenceConstraintViolation"),
    ({"listVersion": 1}, "OccurenceConstraintViolation"),
    ({"listVersion": "1", "updateType": "Full"}, "TypeConstraintViolation"),
    ({"listVersion": 1, "updateType": "Partial"}, "PropertyConstraintViolation"),
    ({"listVersion": 1, "updateType": "Full", "extra": 1}, "FormationViolation"),
    (dict(AAA_WITH, localAuthorizationList={}), "TypeConstraintViolation"),
    (dict(AAA_WITH, localAuthorizationList=[{"idTag": "X" * 21}]), "TypeConstraintViolation"),
    (dict(AAA_WITH, localAuthorizationList=[{}]), "OccurenceConstraintViolation"),
    (dict(AAA_WITH, localAuthorizationList=[{"idTag": "A", "idTagInfo": {"status": "Maybe"}}]),
     "PropertyConstraintViolation"),
    (dict(AAA_WITH, localAuthorizationList=[{"idTag": "A", "idTagInfo": {}}]),
     "OccurenceConstraintViolation"),
])
def test_malformed_send_local_list_is_a_call_error(flash, bad, code):
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema("SendLocalList"))
    msg = flash.send("SendLocalList", bad)
    assert msg[:3] == [4, msg[1], code]
    assert list_version(flash) == 0


def test_malformed_expiry_date_is_property_constraint_violation(flash):
    # the official schema says "format": "date-time", which jsonschema checks only with a
    # format checker; the charge point checks it itself
    bad = dict(AAA_WITH, localAuthorizationList=[
        {"idTag": "A", "idTagInfo": {"status": "Accepted", "expiryDate": "soon"}}])
    msg = flash.send("SendLocalList", bad)
    assert msg[:3] == [4, msg[1], "PropertyConstraintViolation"]
    assert list_version(flash) == 0


def test_get_local_list_version_with_a_field_is_formation_violation(flash):
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"extra": 1}, schema("GetLocalListVersion"))
    msg = flash.send("GetLocalListVersion", {"extra": 1})
    assert msg[:3] == [4, msg[1], "FormationViolation"]


# -- configuration and installation ------------------------------------------------------------


def test_configuration_keys(flash):
    msg = flash.send("GetConfiguration", {"key": ["LocalAuthListEnabled",
                                                  "LocalAuthListMaxLength",
                                                  "SendLocalListMaxLength",
                                                  "LocalAuthorizeOffline",
                                                  "LocalPreAuthorize"]})
    assert msg[2] == {"configurationKey": [
        {"key": "LocalAuthListEnabled", "readonly": False, "value": "true"},
        {"key": "LocalAuthListMaxLength", "readonly": True, "value": "1000"},
        {"key": "SendLocalListMaxLength", "readonly": True, "value": "24"},
        {"key": "LocalAuthorizeOffline", "readonly": False, "value": "true"},
        {"key": "LocalPreAuthorize", "readonly": False, "value": "false"},
    ]}
    for key in ("LocalAuthListMaxLength", "SendLocalListMaxLength"):
        assert flash.send("ChangeConfiguration", {"key": key, "value": "5"})[2] == \
            {"status": "Rejected"}


def test_without_a_folder_the_list_is_not_installed(rig):
    assert rig.cp.local_list is None
    msg = rig.send("SendLocalList", payload(1, "Full"))
    assert msg[:3] == [4, msg[1], "NotSupported"]
    msg = rig.send("GetLocalListVersion", {})
    assert msg[:3] == [4, msg[1], "NotSupported"]
    assert not rig.cp.config.has("LocalAuthListEnabled")


# -- the list in the charge point's authorisation (§3.5): list, then cache, then Authorize --

def test_supported_feature_profiles_name_the_list_on_a_file_store(flash):
    got = flash.send("GetConfiguration", {"key": ["SupportedFeatureProfiles"]})[2]
    assert got["configurationKey"][0]["value"] == (
        "Core,RemoteTrigger,SmartCharging,Reservation,LocalAuthListManagement")


def test_listed_card_is_authorised_offline(flash):
    send_list(flash, 1, "Full", [card("LOCAL01")])
    flash.transport.connected = False
    flash.tap("LOCAL01")  # never seen online; LocalAuthorizeOffline is true
    flash.ev("C")
    assert flash.conn().tx is not None and flash.hw().relay.closed
    assert flash.payloads("Authorize") == []


def test_listed_blocked_card_is_refused_offline_even_when_unknown_ids_are_allowed(flash):
    send_list(flash, 1, "Full", [card("LOCAL02", "Blocked")])
    flash.cp.config.change("AllowOfflineTxForUnknownId", "true")
    flash.transport.connected = False
    flash.tap("LOCAL02")
    flash.ev("C")
    assert flash.conn().tx is None and not flash.hw().relay.closed


def test_list_takes_precedence_over_the_cache(flash):
    flash.cs.authorized.add("LOCAL03")
    flash.tap("LOCAL03")  # Authorize: Accepted, cached
    flash.ev("C")
    flash.ev("A")
    assert flash.cp.cache.status("LOCAL03") == "Accepted"
    send_list(flash, 1, "Full", [card("LOCAL03", "Blocked")])
    flash.transport.connected = False
    flash.tap("LOCAL03")
    flash.ev("C")
    assert flash.conn().tx is None


def test_listed_card_with_local_pre_authorize_starts_without_asking(flash):
    send_list(flash, 1, "Full", [card("LOCAL04")])
    flash.cs.authorized.add("LOCAL04")  # what StartTransaction's answer will say
    flash.cp.config.change("LocalPreAuthorize", "true")
    flash.cs.answers["Authorize"] = None  # would hang
    flash.tap("LOCAL04")
    flash.ev("C")
    assert flash.hw().relay.closed and flash.payloads("Authorize") == []


def test_answers_for_a_listed_card_are_not_cached(flash):
    send_list(flash, 1, "Full", [card("CAFE0001", "Blocked")])
    flash.tap("CAFE0001")  # the list says Blocked: Authorize asked, Accepted by the CS
    assert flash.payloads("Authorize") == [{"idTag": "CAFE0001"}]
    assert flash.cp.cache.status("CAFE0001") is None
