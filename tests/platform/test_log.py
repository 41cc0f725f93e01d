"""chargepoint.platform.log: stamped lines buffered in RAM and appended to flash (on flush(), by
poll() once the oldest has waited _FLUSH_MS, when the buffer is full, before a snapshot),
rotation within its bounds at every flush, what a power cut leaves, the rate limit, prints
routed to it unchanged, and the snapshot an upload sends."""
import os

import pytest

from chargepoint.ocpp.timestamps import iso
from chargepoint.platform import log as logmod
from chargepoint.platform.clock import Clock
from chargepoint.platform.log import Log
from tools.fakes import FakeTicks

T0 = 1795262400  # 2026-11-21T12:00:00Z


@pytest.fixture
def ticks():
    return FakeTicks()


@pytest.fixture
def clock(ticks):
    return Clock(boot=3, ticks_ms=ticks)


def lines(folder, name="log.txt"):
    return (folder / name).read_text().splitlines()


def on_flash(folder, name="log.txt"):
    """The lines in the file now, none when there is no file yet."""
    path = folder / name
    return path.read_text().splitlines() if path.exists() else []


def ends(found):
    """The numbers of numbered() lines: ["000", "001", ...]."""
    return [line[-3:] for line in found]


def numbered(log, ticks, numbers):
    """Lines of 32 bytes ("<ISO stamp> t line 007"), a rate limit's refill apart."""
    for i in numbers:
        log.write("t", "line %03d" % i)
        ticks.advance(logmod._REFILL_MS)


@pytest.fixture
def wall(clock):
    clock.set_wall(T0)
    return clock


def test_a_line_carries_the_clocks_stamp_and_its_category(tmp_path, clock):
    log = Log(str(tmp_path / "data"), clock)
    log.write("boot", "boot 3, firmware 0.1.0")
    clock.set_wall(T0)
    log.write("mqtt", "link down: OSError: timed out")
    log.flush()
    assert lines(tmp_path / "data") == ["@3:1000 boot boot 3, firmware 0.1.0",
                                        "2026-11-21T12:00:00Z mqtt link down: OSError: timed out"]


def test_text_stays_on_one_line_and_is_cut_at_its_bound(tmp_path, clock):
    log = Log(str(tmp_path), clock)
    log.write("x", "one\ntwo\r\nthree")
    log.write("x", "y" * 1000)
    log.flush()
    first, second = lines(tmp_path)
    assert first == "@3:1000 x one two  three"
    assert second == "@3:1000 x " + "y" * logmod._LINE + "..."


def test_rotation_keeps_each_file_within_its_bound_at_every_flush_and_drops_the_oldest(
        tmp_path, wall, ticks):
    log = Log(str(tmp_path), wall, max_bytes=300, files=2)
    for first in range(0, 100, 4):
        numbered(log, ticks, range(first, first + 4))  # 128 bytes a flush
        log.flush()
        assert on_flash(tmp_path)[-1].endswith("%03d" % (first + 3))  # nothing left behind
        for name in ("log.txt", "log.1.txt"):
            path = tmp_path / name
            assert not path.exists() or path.stat().st_size <= 300
    assert sorted(os.listdir(tmp_path)) == ["log.1.txt", "log.txt"]
    kept = lines(tmp_path, "log.1.txt") + lines(tmp_path)
    numbers = [int(line.split()[-1]) for line in kept]
    assert numbers == list(range(numbers[0], 100))  # in order, nothing lost in between
    # rotated per flush: a flush's lines stay together (256 bytes, where 9 lines would fit)
    assert ends(lines(tmp_path, "log.1.txt")) == ["%03d" % n for n in range(88, 96)]
    assert ends(lines(tmp_path)) == ["096", "097", "098", "099"]
    assert log.written == 100 * 32 and log.size == (tmp_path / "log.txt").stat().st_size


def test_a_bound_smaller_than_the_buffer_is_kept_without_a_flush_being_asked(tmp_path, wall,
                                                                            ticks):
    log = Log(str(tmp_path), wall, max_bytes=100, files=2)
    assert logmod._BUF > 100
    numbered(log, ticks, range(7))  # the buffer goes out before it holds more than 100 bytes
    assert ends(lines(tmp_path, "log.1.txt")) == ["000", "001", "002"]
    assert ends(lines(tmp_path)) == ["003", "004", "005"]
    log.flush()
    assert ends(lines(tmp_path, "log.1.txt")) == ["003", "004", "005"]
    assert ends(lines(tmp_path)) == ["006"]
    assert all((tmp_path / n).stat().st_size <= 100 for n in os.listdir(tmp_path))


def test_more_files_shift_down_one_by_one(tmp_path, wall, ticks):
    log = Log(str(tmp_path), wall, max_bytes=100, files=3)
    numbered(log, ticks, range(13))  # 3 lines a file
    log.flush()
    assert sorted(os.listdir(tmp_path)) == ["log.1.txt", "log.2.txt", "log.txt"]
    assert [line[-3:] for line in lines(tmp_path, "log.2.txt")] == ["006", "007", "008"]
    assert [line[-3:] for line in lines(tmp_path, "log.1.txt")] == ["009", "010", "011"]
    assert [line[-3:] for line in lines(tmp_path, "log.txt")] == ["012"]
    assert log.paths() == [str(tmp_path / n) for n in ("log.2.txt", "log.1.txt", "log.txt")]


def test_a_line_waits_in_ram_until_flush_then_all_go_in_one_append(tmp_path, wall, ticks,
                                                                    monkeypatch):
    opened = []
    real_open = open

    def spy(path, mode="r"):
        opened.append(mode)
        return real_open(path, mode)

    monkeypatch.setattr(logmod, "open", spy, raising=False)
    log = Log(str(tmp_path), wall)
    for i in range(10):
        assert log.write("t", "line %03d" % i)
        assert not (tmp_path / "log.txt").exists() and opened == []  # nothing on flash yet
    assert log.written == 0 and log.size == 0
    log.flush()
    assert ends(lines(tmp_path)) == ["%03d" % i for i in range(10)]
    assert opened == ["ab"]  # one append for the ten lines, never read back
    assert log.written == log.size == 10 * 32
    log.flush()  # nothing waits: no write at all
    assert opened == ["ab"]


def test_poll_writes_the_lines_once_the_oldest_has_waited_ten_seconds(tmp_path, wall, ticks):
    log = Log(str(tmp_path), wall)
    log.write("t", "line 000")
    ticks.advance(4000)
    log.write("t", "line 001")
    log.poll()
    assert on_flash(tmp_path) == []
    ticks.advance(logmod._FLUSH_MS - 4000 - 1)  # the oldest is 1 ms short of its wait
    log.poll()
    assert on_flash(tmp_path) == []
    ticks.advance(1)
    log.poll()
    assert ends(lines(tmp_path)) == ["000", "001"]  # the younger one goes with it
    log.write("t", "line 002")  # the wait starts again with the next line
    ticks.advance(logmod._FLUSH_MS - 1)
    log.poll()
    assert ends(lines(tmp_path)) == ["000", "001"]
    ticks.advance(1)
    log.poll()
    assert ends(lines(tmp_path)) == ["000", "001", "002"]
    log.poll()  # nothing buffered: nothing written
    assert log.written == 3 * 32


def test_a_full_buffer_sends_the_earlier_lines_to_flash_and_keeps_the_new_one(tmp_path, wall,
                                                                              ticks):
    log = Log(str(tmp_path), wall)
    fit = logmod._BUF // 32  # numbered() lines are 32 bytes: exactly this many fill it
    numbered(log, ticks, range(fit))
    assert on_flash(tmp_path) == []
    numbered(log, ticks, [fit])
    assert ends(lines(tmp_path)) == ["%03d" % i for i in range(fit)]
    assert log.written == logmod._BUF  # the one waiting line is not on flash
    log.flush()
    assert ends(lines(tmp_path)) == ["%03d" % i for i in range(fit + 1)]


def test_a_power_cut_loses_only_the_buffered_lines_never_a_flushed_one(tmp_path, wall, ticks):
    log = Log(str(tmp_path), wall)
    numbered(log, ticks, range(5))
    log.flush()
    numbered(log, ticks, range(5, 8))  # waiting in RAM when the power goes
    log = Log(str(tmp_path), wall)  # the next boot, no flush before
    assert ends(lines(tmp_path)) == ["000", "001", "002", "003", "004"]
    assert log.size == 5 * 32
    numbered(log, ticks, [8])
    log.flush()
    assert ends(lines(tmp_path)) == ["000", "001", "002", "003", "004", "008"]
    # lines that went out because the buffer filled survive a cut too
    fit = logmod._BUF // 32
    numbered(log, ticks, range(100, 100 + fit + 1))
    log = Log(str(tmp_path), wall)
    assert ends(lines(tmp_path))[6:] == ["%03d" % i for i in range(100, 100 + fit)]


def test_a_snapshot_includes_the_buffered_lines(tmp_path, wall, ticks):
    log = Log(str(tmp_path), wall)
    numbered(log, ticks, range(3))
    log.flush()
    numbered(log, ticks, range(3, 5))
    path, size = log.snapshot()
    assert ends(open(path).read().splitlines()) == ["000", "001", "002", "003", "004"]
    assert size == 5 * 32
    assert ends(lines(tmp_path)) == ["000", "001", "002", "003", "004"]  # flushed on the way


def test_after_a_power_cut_the_next_boot_appends_and_still_rotates_in_bounds(tmp_path, wall,
                                                                            ticks):
    log = Log(str(tmp_path), wall, max_bytes=100)
    numbered(log, ticks, range(3))
    log.poll()  # the main loop ran: the oldest line waited long enough, all are on flash
    (tmp_path / "diagnostics.tmp").write_text("half an upload")
    log = Log(str(tmp_path), wall, max_bytes=100)  # the next boot
    assert log.size == 96 and not (tmp_path / "diagnostics.tmp").exists()
    numbered(log, ticks, [3, 4])
    log.flush()
    assert [line[-3:] for line in lines(tmp_path, "log.1.txt")] == ["000", "001", "002"]
    assert [line[-3:] for line in lines(tmp_path)] == ["003", "004"]


def test_a_power_cut_in_the_middle_of_a_rotation_loses_no_current_line(tmp_path, wall, ticks):
    log = Log(str(tmp_path), wall, max_bytes=100)
    numbered(log, ticks, range(6))
    log.flush()
    (tmp_path / "log.1.txt").unlink()  # rotation removed the oldest file, then the power went
    log = Log(str(tmp_path), wall, max_bytes=100)
    numbered(log, ticks, [6])
    log.flush()
    assert [line[-3:] for line in lines(tmp_path, "log.1.txt")] == ["003", "004", "005"]
    assert [line[-3:] for line in lines(tmp_path)] == ["006"]


def test_a_flood_is_rate_limited_and_the_lines_held_back_are_counted(tmp_path, clock, ticks):
    log = Log(str(tmp_path), clock)
    for i in range(50):
        log.write("t", "flood %d" % i)
    log.flush()
    assert len(lines(tmp_path)) == logmod._BURST and log.dropped == 50 - logmod._BURST
    ticks.advance(logmod._REFILL_MS)
    assert log.write("t", "after")
    log.flush()
    assert lines(tmp_path)[-1] == "@3:%d t after (20 lines not logged before)" % ticks.now
    assert not log.write("t", "too soon")
    ticks.advance(logmod._REFILL_MS * 100)  # an hour later the burst is back, no more
    for i in range(logmod._BURST + 1):
        log.write("t", "burst")
    assert log.dropped == 1


def test_a_flash_that_refuses_writes_is_counted_never_raised(tmp_path, clock, ticks):
    log = Log(str(tmp_path), clock)
    (tmp_path / "log.txt").mkdir()  # whatever the filesystem says, open fails
    assert log.write("t", "lost") and log.errors == 0  # buffered: the flash not asked yet
    log.flush()  # refused, the log made smaller, refused again
    assert log.errors == 2 and log.written == 0 and log.max_bytes == logmod.MAX_BYTES // 2
    log.write("t", "lost too")
    ticks.advance(logmod._FLUSH_MS)
    log.poll()  # the loop's flush, neither
    assert log.errors == 4 and log.max_bytes == logmod.MAX_BYTES // 4
    for i in range(5):  # nor the one a full buffer makes inside write(): 4 lines fill it
        assert log.write("t", "x" * logmod._LINE)
    assert log.errors == 6 and log.written == 0 and log.max_bytes == logmod._MIN_BYTES
    log.write("t", "at the floor")
    log.flush()  # no smaller: tried once
    assert log.errors == 7 and log.max_bytes == logmod._MIN_BYTES


def test_a_full_flash_makes_the_log_smaller_its_oldest_file_first(tmp_path, clock):
    log = Log(str(tmp_path), clock, files=3)
    for n in (1, 2):
        (tmp_path / ("log.%d.txt" % n)).write_bytes(b"old lines\n")
    (tmp_path / "log.txt").mkdir()  # the flash refuses the append
    log.write("t", "lost")
    log.flush()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.1.txt", "log.txt"]
    assert log.max_bytes == logmod.MAX_BYTES // 2


def test_said_lines_show_on_the_console_and_go_to_the_log(tmp_path, clock, capsys):
    log = Log(str(tmp_path), clock)
    log.say("mqtt: link down: OSError: timed out")
    log.flush()
    assert capsys.readouterr().out == "mqtt: link down: OSError: timed out\n"
    assert lines(tmp_path) == ["@3:1000 console mqtt: link down: OSError: timed out"]


def test_snapshot_concatenates_oldest_first_and_keeps_the_time_window(tmp_path, clock, ticks):
    log = Log(str(tmp_path), clock, max_bytes=200)
    log.write("boot", "before the clock was set")
    clock.set_wall(T0)
    for minute in range(10):
        log.write("t", "minute %d" % minute)
        ticks.advance(60000)
    log.flush()
    everything = (tmp_path / "log.1.txt").read_bytes() + (tmp_path / "log.txt").read_bytes()
    path, size = log.snapshot()
    assert open(path, "rb").read() == everything and size == len(everything)
    path, size = log.snapshot(iso(T0 + 180), iso(T0 + 300))
    got = open(path).read().splitlines()
    assert got == ["@3:1000 boot before the clock was set", iso(T0 + 180) + " t minute 3",
                   iso(T0 + 240) + " t minute 4", iso(T0 + 300) + " t minute 5"]
    log.discard(path)
    assert not os.path.exists(path)


def test_the_whole_log_carries_the_records_set_aside_as_damaged_in_hex(tmp_path, clock, ticks):
    log = Log(str(tmp_path), clock)
    log.write("store", "StoredRecordDamaged: config (checksum mismatch)")
    (tmp_path / "config.bad").write_bytes(b"#R1 2 00000000\n\xff\x00")
    (tmp_path / "q.00000001.bad").write_bytes(b"x" * 3000)
    path, size = log.snapshot()
    got = open(path).read().splitlines()
    assert got[0].endswith("StoredRecordDamaged: config (checksum mismatch)")
    assert got[1:3] == ["--- config.bad, set aside as damaged (hex) ---",
                        b"#R1 2 00000000\n\xff\x00".hex()]
    assert got[3] == "--- q.00000001.bad, set aside as damaged (hex, its first 2048 bytes) ---"
    assert "".join(got[4:]) == "78" * 2048 and size == os.path.getsize(path)
    path, _ = log.snapshot(category="store")  # (GetLog's security log: the lines only)
    assert len(open(path).read().splitlines()) == 1


def test_snapshot_of_one_category_keeps_only_its_lines_in_every_file(tmp_path, clock, ticks):
    log = Log(str(tmp_path), clock, max_bytes=600)
    log.write("security", "StartupOfTheDevice: boot 3")
    clock.set_wall(T0)
    for minute in range(8):
        log.write("security" if minute % 3 == 0 else "ocpp", "security minute %d" % minute)
        log.write("securityx", "a category that only starts alike")
        ticks.advance(60000)
    log.flush()
    assert len(log.paths()) == 2
    path, size = log.snapshot(category="security")
    got = open(path).read().splitlines()
    assert got == ["@3:1000 security StartupOfTheDevice: boot 3",
                   iso(T0) + " security security minute 0",
                   iso(T0 + 180) + " security security minute 3",
                   iso(T0 + 360) + " security security minute 6"]
    assert size == sum(len(line) + 1 for line in got)
    path, _ = log.snapshot(iso(T0 + 60), None, "security")
    assert open(path).read().splitlines()[1:] == got[2:]


def test_no_rotation_while_a_snapshot_copies(tmp_path, wall, ticks):
    log = Log(str(tmp_path), wall, max_bytes=100)
    log._held = 1  # a snapshot is between two steps of its copy
    numbered(log, ticks, range(6))
    log.flush()
    assert not (tmp_path / "log.1.txt").exists() and log.size == 6 * 32
    log._held = 0
    numbered(log, ticks, [6])
    log.flush()
    assert len(lines(tmp_path, "log.1.txt")) == 6 and lines(tmp_path)[0].endswith("006")
