"""FileStore: whole records, written atomically, each with its length and CRC32: a damaged one
is set aside and reported, the copy before it read instead; a refused write never raises.
The same on the twin's LittleFS, full flash included: tests/platform/test_store_twin.py."""
import binascii
import json
import os

import pytest

from chargepoint.platform.store import FileStore


def test_records_round_trip_and_list_by_prefix(tmp_path):
    s = FileStore(str(tmp_path / "data"))
    assert s.write("q.00000001", {"a": "StartTransaction", "p": {"meterStart": 12}}) is True
    s.write("q.00000002", [1, 2])
    s.write("q.00000002", [1, 2, 3])  # the copy it replaces stays as .old
    s.write("txids", {})
    assert s.read("q.00000001") == {"a": "StartTransaction", "p": {"meterStart": 12}}
    assert s.names("q.") == ["q.00000001", "q.00000002"]
    s.remove("q.00000002")
    assert s.names("q.") == ["q.00000001"]
    assert not (tmp_path / "data" / "q.00000002.old").exists()
    s.remove("q.00000001")
    s.remove("q.00000001")  # gone already: fine
    assert s.read("q.00000001", "none") == "none"
    assert s.damaged == [] and s.failed is None


def test_a_record_carries_its_length_and_crc32(tmp_path):
    s = FileStore(str(tmp_path))
    s.write("boot", {"n": 7})
    head, body = (tmp_path / "boot").read_bytes().split(b"\n", 1)
    assert body == json.dumps({"n": 7}).encode()
    assert head == b"#R1 %d %08x" % (len(body), binascii.crc32(body))


def damage(path, how):
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[:-3])
    elif how == "flipped":
        i = len(data) - 4
        path.write_bytes(data[:i] + bytes([data[i] ^ 0x10]) + data[i + 1:])
    elif how == "zero length":
        path.write_bytes(b"")
    elif how == "garbage":
        path.write_bytes(bytes(range(256)) * 3)
    elif how == "header only":
        path.write_bytes(data.split(b"\n")[0] + b"\n")
    elif how == "bad header":
        path.write_bytes(b"#R1 x y\n" + data.split(b"\n", 1)[1])


@pytest.mark.parametrize("how", ["truncated", "flipped", "zero length", "garbage",
                                 "header only", "bad header"])
def test_a_damaged_record_is_set_aside_reported_and_the_copy_before_it_read(tmp_path, how):
    folder = tmp_path / "data"
    s = FileStore(str(folder))
    s.write("tx1", {"ref": "1.1", "last": [100, "t1"]})
    s.write("tx1", {"ref": "1.1", "last": [200, "t2"]})
    damage(folder / "tx1", how)
    s = FileStore(str(folder))  # the next boot
    assert s.read("tx1") == {"ref": "1.1", "last": [100, "t1"]}  # the last good state
    assert (folder / "tx1.bad").exists() and s.names() == []
    assert len(s.damaged) == 1 and s.damaged[0][0] == "tx1"
    assert s.read("tx1") == {"ref": "1.1", "last": [100, "t1"]}  # reported once
    assert len(s.damaged) == 1
    s.write("tx1", {"ref": "1.1", "last": [300, "t3"]})
    assert s.read("tx1") == {"ref": "1.1", "last": [300, "t3"]} and s.names() == ["tx1"]


def test_a_damaged_record_without_a_copy_before_it_reads_as_its_default(tmp_path):
    s = FileStore(str(tmp_path))
    s.write("boot", {"n": 4})
    damage(tmp_path / "boot", "flipped")
    assert s.read("boot", {"n": 0}) == {"n": 0}
    assert [name for name, _ in s.damaged] == ["boot"]
    assert s.damaged[0][1] == "checksum mismatch"


def test_a_record_of_another_type_than_its_reader_expects_is_damaged(tmp_path):
    s = FileStore(str(tmp_path))
    s.write("config", [1, 2])  # a list where a dict is read
    assert s.read("config", {}) == {}
    assert s.damaged == [("config", "a list, not a dict")]


def test_records_of_the_firmware_before_checksums_are_taken_once(tmp_path):
    (tmp_path / "config").write_text('{"HeartbeatInterval": "300"}')
    (tmp_path / "meter1").write_text("1234")
    (tmp_path / "boot").write_text("{not json")
    (tmp_path / "bootguard").write_text('{"n": 1, "cause": null}')  # main.py's, not ours
    (tmp_path / "log.txt").write_text("@1:0 boot boot 1\n")
    s = FileStore(str(tmp_path))  # the first start of this firmware on that flash
    assert s.read("config", {}) == {"HeartbeatInterval": "300"}
    assert s.read("meter1") == 1234
    assert (tmp_path / "config").read_bytes().startswith(b"#R1 ")  # written with one now
    assert s.read("boot", {"n": 0}) == {"n": 0} and s.damaged == [("boot", "no checksum")]
    assert (tmp_path / "bootguard").read_text() == '{"n": 1, "cause": null}'
    assert (tmp_path / "log.txt").read_text() == "@1:0 boot boot 1\n"
    # from then on a file without its checksum is a damaged record
    (tmp_path / "txids").write_text('{"1.1": 5}')
    s = FileStore(str(tmp_path))
    assert s.read("txids", {}) == {} and s.damaged == [("txids", "no checksum")]
    assert s.read("meter1") == 1234


def test_a_tmp_beside_a_good_copy_goes_and_a_whole_one_alone_is_taken(tmp_path):
    folder = tmp_path / "data"
    s = FileStore(str(folder))
    s.write("tx1", {"ref": "1.1"})
    (folder / "tx1.tmp").write_text("#R1 40 0000")  # the power went mid-write
    s.write("fwjob", {"url": "x"})
    other = FileStore(str(tmp_path / "other"))
    other.write("fwjob", {"url": "y"})
    # the power went between a write's two renames: the record is .old, the new copy .tmp
    os.rename(folder / "fwjob", folder / "fwjob.old")
    (folder / "fwjob.tmp").write_bytes((tmp_path / "other" / "fwjob").read_bytes())
    s = FileStore(str(folder))  # the next boot
    assert not (folder / "tx1.tmp").exists() and s.read("tx1") == {"ref": "1.1"}
    assert s.read("fwjob") == {"url": "y"} and not (folder / "fwjob.tmp").exists()
    assert s.damaged == []


def test_a_refused_write_keeps_the_record_and_is_reported_once_per_spell(tmp_path, monkeypatch):
    s = FileStore(str(tmp_path))
    s.write("txids", {"1.1": 5})
    real = open

    def full(path, mode="r", *a, **k):
        if "w" in mode:
            raise OSError(28, "No space left on device")
        return real(path, mode, *a, **k)
    monkeypatch.setattr("builtins.open", full)
    assert s.write("txids", {"1.1": 5, "1.2": 6}) is False
    assert s.write("boot", {"n": 2}) is False
    assert s.read("txids") == {"1.1": 5} and s.names() == ["txids"]
    assert s.errors == 2 and s.failed == ("txids", "OSError: [Errno 28] No space left on device")
    s.failed = None  # reported
    assert s.write("boot", {"n": 3}) is False and s.failed is None  # the same spell
    monkeypatch.setattr("builtins.open", real)
    assert s.write("boot", {"n": 3}) is True
    monkeypatch.setattr("builtins.open", full)
    assert s.write("boot", {"n": 4}) is False and s.failed[0] == "boot"  # a new one


def test_a_log_of_records_appends_scans_from_an_offset_and_is_rewritten_whole(tmp_path):
    s = FileStore(str(tmp_path))
    for i in range(3):
        assert s.append("q.00000001", {"s": i + 1, "x": "a\nb"}) is True
    got = list(s.scan("q.00000001"))
    assert [v["s"] for v, _ in got] == [1, 2, 3] and got[-1][1] == s.size("q.00000001")
    assert [v["s"] for v, _ in s.scan("q.00000001", got[0][1])] == [2, 3]
    assert s.rewrite("q.00000001", [{"s": 3}]) is True
    assert [v for v, _ in s.scan("q.00000001")] == [{"s": 3}]
    assert not (tmp_path / "q.00000001.old").exists()
    assert list(s.scan("q.00000009")) == []


def test_a_log_record_cut_short_or_damaged_is_skipped_and_the_rest_read(tmp_path):
    s = FileStore(str(tmp_path))
    s.append("q.00000001", {"s": 1})
    path = tmp_path / "q.00000001"
    whole = path.read_bytes()
    path.write_bytes(whole + whole[:len(whole) // 2])  # an append cut short...
    s.append("q.00000001", {"s": 3})  # ...and the next one run on after it
    s.append("q.00000001", {"s": 4})
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01  # bits flipped in the last one
    path.write_bytes(bytes(data))
    got = list(s.scan("q.00000001", report=True))
    assert [v["s"] for v, _ in got] == [1, 3]
    assert [v["s"] for v, _ in s.scan("q.00000001", got[0][1])] == [3]
    assert len(s.damaged) == 2


def test_a_log_cut_between_the_renames_of_a_rewrite_is_read_from_its_old_copy(tmp_path):
    s = FileStore(str(tmp_path))
    s.append("q.00000001", {"s": 1})
    s.append("q.00000001", {"s": 2})
    os.rename(tmp_path / "q.00000001", tmp_path / "q.00000001.old")
    (tmp_path / "q.00000001.tmp").write_bytes(b"#R1 3 0000")  # cut short
    s = FileStore(str(tmp_path))
    assert [v["s"] for v, _ in s.scan("q.00000001")] == [1, 2]
