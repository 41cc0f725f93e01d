"""FileStore: whole records, written atomically, a half-written one never read."""
from chargepoint.platform.store import FileStore


def test_records_round_trip_and_list_by_prefix(tmp_path):
    s = FileStore(str(tmp_path / "data"))
    s.write("q.00000001", {"a": "StartTransaction", "p": {"meterStart": 12}})
    s.write("q.00000002", [1, 2])
    s.write("txids", {})
    assert s.read("q.00000001") == {"a": "StartTransaction", "p": {"meterStart": 12}}
    assert s.names("q.") == ["q.00000001", "q.00000002"]
    s.remove("q.00000001")
    s.remove("q.00000001")  # gone already: fine
    assert s.read("q.00000001", "none") == "none"


def test_a_half_written_record_is_dropped_at_boot_and_a_corrupt_one_reads_as_missing(tmp_path):
    folder = tmp_path / "data"
    s = FileStore(str(folder))
    s.write("tx1", {"ref": "1.1"})
    (folder / "tx1.tmp").write_text('{"ref": "1.')  # the power went mid-write
    (folder / "boot").write_text("{not json")
    s = FileStore(str(folder))  # the next boot
    assert not (folder / "tx1.tmp").exists() and s.names() == ["boot", "tx1"]
    assert s.read("tx1") == {"ref": "1.1"} and s.read("boot", {"n": 0}) == {"n": 0}
