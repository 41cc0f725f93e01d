"""MFRC522 driver against the register-level reader model with an ISO 14443A card in the field."""
import os
import subprocess

import machine  # tools/simfs/machine.py, on sys.path through conftest.py
import pytest
from tools.fakes import FakeTicks
from mfrc522_model import HALT, MFRC522Model

from chargepoint.hardware.mfrc522 import MFRC522, crc_a

SPI_BUS, CS, RST = 1, 5, 22


class Rig:
    def __init__(self, rst=False, **kw):
        self.chip = MFRC522Model()
        self.chip.frames = []
        self.ticks = FakeTicks()
        machine.wire_bus("spi", SPI_BUS, self.chip)
        machine.wire(CS, self.chip.cs)
        if rst:
            machine.wire(RST, self.chip.rst)
        self.reader = MFRC522(machine.SPI(SPI_BUS), machine.Pin(CS),
                              machine.Pin(RST) if rst else None, ticks_ms=self.ticks, **kw)

    def retry_scans(self):
        """The scans in one retry_ms."""
        return self.reader.retry_ms // self.reader.interval_ms

    def scan(self, times=1):
        """Let a scan interval pass `times` times; every UID reported on the way."""
        got = []
        for _ in range(times):
            self.ticks.advance(self.reader.interval_ms)
            uid = self.reader.poll()
            if uid is not None:
                got.append(uid)
        return got


@pytest.fixture
def rig():
    return Rig()


def test_crc_a_of_hlta():
    assert crc_a(b"\x50\x00", 2) == 0xCD57  # HLTA is 50 00 57 CD on the air


def test_four_byte_uid_is_upper_case_hex(rig):
    rig.chip.present("04a1b2c3")
    assert rig.scan() == ["04A1B2C3"]
    sent = [f for f, _ in rig.chip.frames]
    assert sent[:2] == [b"\x52", b"\x93\x20"]  # WUPA, anticollision cascade level 1
    assert sent[2][:2] == b"\x93\x70" and sent[-1] == b"\x50\x00\x57\xcd"  # SELECT ... HLTA
    assert rig.chip.card.state == HALT


def test_scans_cut_short_before_the_chips_timer_leave_it_ready_for_the_next(rig):
    # the model runs the chip's timer in real time from its registers (1.6 s at the longest
    # reload); the driver waits 2 ms at most for a WUPA's answer (a busy wait on the loop)
    # and stops the command: the chip is still waiting then, and the next scans work
    rig.chip.regs[0x2C] = rig.chip.regs[0x2D] = 0xFF
    assert rig.chip.timeout_ms() > 1500
    assert rig.scan(3) == [] and rig.chip.empty_scans == 3
    assert rig.chip._timer_due is not None  # (it never ran out)
    rig.chip.present("04a1b2c3")
    assert rig.scan() == ["04A1B2C3"]


def test_seven_byte_uid_through_two_cascade_levels(rig):
    rig.chip.present("04112233445566")
    assert rig.scan() == ["04112233445566"]
    sels = [f[:2] for f, _ in rig.chip.frames if len(f) in (2, 9)]
    assert sels == [b"\x93\x20", b"\x93\x70", b"\x95\x20", b"\x95\x70"]
    assert rig.chip.frames[2][0][2] == 0x88  # cascade tag in level 1


def test_ten_byte_uid_through_three_cascade_levels(rig):
    rig.chip.present("0411223344556677889A")
    assert rig.scan() == ["0411223344556677889A"]
    sels = [f[0] for f, _ in rig.chip.frames if len(f) == 9]
    assert sels == [0x93, 0x95, 0x97]


def test_card_held_in_the_field_gives_one_event(rig):
    rig.chip.present("04A1B2C3")
    assert rig.scan(50) == ["04A1B2C3"]


def test_removed_then_presented_again_gives_another_event(rig):
    rig.chip.present("04A1B2C3")
    assert rig.scan(3) == ["04A1B2C3"]
    rig.chip.remove()
    assert rig.scan(rig.reader.gone_polls) == []
    rig.chip.present("04A1B2C3")
    assert rig.scan(3) == ["04A1B2C3"]


def test_one_missed_scan_is_not_a_new_presentation(rig):
    rig.chip.present("04A1B2C3")
    assert rig.scan() == ["04A1B2C3"]
    rig.chip.remove()
    # scans without an answer for less than gone_polls * interval_ms (200 ms): the card
    # is at the edge of the field
    assert rig.scan(rig.reader.gone_polls - 1) == []
    rig.chip.present("04A1B2C3")
    assert rig.scan(3) == []


def test_another_card_is_reported_at_once(rig):
    rig.chip.present("04A1B2C3")
    rig.scan()
    rig.chip.present("04112233445566")
    assert rig.scan(3) == ["04112233445566"]


def test_no_card_no_event(rig):
    assert rig.scan(10) == []
    assert not rig.reader.failed


def test_polls_between_scans_leave_the_bus_alone(rig):
    rig.chip.present("04A1B2C3")
    rig.scan()
    n = len(rig.chip.frames)
    for _ in range(4):  # the charge point's loop polls more often than the reader scans
        rig.ticks.advance(rig.reader.interval_ms // 5)
        assert rig.reader.poll() is None
    assert len(rig.chip.frames) == n
    rig.ticks.advance(20)
    rig.reader.poll()
    assert len(rig.chip.frames) > n


def test_reader_failure_reported_once_and_recovered(rig):
    reader = rig.reader
    rig.chip.present("04A1B2C3")
    assert rig.scan() == ["04A1B2C3"]
    rig.chip.broken = True
    seen = []
    for _ in range(100):  # 10 s of polling a dead reader
        rig.ticks.advance(100)
        assert reader.poll() is None
        seen.append(reader.failed)
    assert seen[0] is False and all(seen[1:])  # the second bad check in a row
    assert reader.failures == 1
    rig.chip.broken = False
    rig.chip._reset()  # it came back from a power cycle: antenna off, registers reset
    got = rig.scan(rig.retry_scans())  # re-initialised within retry_ms
    assert not reader.failed
    assert got == ["04A1B2C3"]  # the card held meanwhile counts as a new presentation


def test_dead_reader_retried_at_a_bounded_rate(rig):
    rig.chip.broken = True
    rig.scan(2)
    assert rig.reader.failed
    inits = []
    rig.reader.init = lambda real=rig.reader.init: inits.append(1) or real()
    rig.scan(2 * rig.retry_scans())  # 10 s
    assert len(inits) == 2  # every retry_ms (5 s)


def test_dead_at_start_is_failed_from_the_start():
    chip = MFRC522Model()
    chip.broken = True
    machine.wire_bus("spi", SPI_BUS, chip)
    machine.wire(CS, chip.cs)
    reader = MFRC522(machine.SPI(SPI_BUS), machine.Pin(CS), ticks_ms=FakeTicks())
    assert reader.failed and reader.failures == 1


def test_unknown_chip_version_is_a_failure():
    chip = MFRC522Model(version=0x12)
    machine.wire_bus("spi", SPI_BUS, chip)
    machine.wire(CS, chip.cs)
    assert MFRC522(machine.SPI(SPI_BUS), machine.Pin(CS), ticks_ms=FakeTicks()).failed


def test_fm17522_clone_is_accepted():
    chip = MFRC522Model(version=0x88)
    machine.wire_bus("spi", SPI_BUS, chip)
    machine.wire(CS, chip.cs)
    assert not MFRC522(machine.SPI(SPI_BUS), machine.Pin(CS), ticks_ms=FakeTicks()).failed


def test_chip_reset_by_a_brown_out_is_set_up_again_silently(rig):
    rig.chip._reset()  # antenna off, timer unset
    rig.chip.present("04A1B2C3")
    assert rig.scan() == ["04A1B2C3"]
    assert not rig.reader.failed and rig.reader.failures == 0


def test_spi_errors_never_reach_the_caller(rig):
    def broken(*_):
        raise OSError(5)

    rig.reader._spi.write_readinto = broken
    assert rig.scan(5) == []
    assert rig.reader.failed


def test_reset_pin_wakes_the_chip():
    r = Rig(rst=True)
    assert not r.reader.failed
    r.chip.present("04A1B2C3")
    assert r.scan() == ["04A1B2C3"]
    machine.Pin(RST).value(0)  # someone powered it down
    assert r.scan(2) == []
    assert r.reader.failed
    assert r.scan(r.retry_scans()) == ["04A1B2C3"]  # the retry pulses NRSTPD
    assert not r.reader.failed


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SIMFS = os.path.join(ROOT, "tools", "simfs")
TWIN = os.path.join(ROOT, "build", "twin", "micropython")


@pytest.mark.skipif(not os.path.exists(TWIN), reason="no device twin built (make twin)")
def test_driver_and_model_on_the_twin():
    code = """
import machine, time
from mfrc522_model import MFRC522Model
from chargepoint.hardware.mfrc522 import MFRC522
chip = MFRC522Model()
machine.wire_bus("spi", 1, chip)
machine.wire(5, chip.cs)
now = [0]
r = MFRC522(machine.SPI(1), machine.Pin(5), ticks_ms=lambda: now[0])
out = []
for uid in ("04A1B2C3", "04112233445566", "0411223344556677889A"):
    chip.present(uid)
    for _ in range(5):
        now[0] += 100
        out.append(r.poll())
    chip.remove()
    for _ in range(3):
        now[0] += 100
        out.append(r.poll())
print([u for u in out if u])
chip.broken = True
for _ in range(3):
    now[0] += 100
    r.poll()
print(r.failed, r.failures)
chip.broken = False
for _ in range(60):
    now[0] += 100
    r.poll()
print(r.failed)
"""
    r = subprocess.run([TWIN, "-X", "heapsize=110000", "-c", code], capture_output=True,
                       text=True, timeout=60,
                       env=dict(os.environ, MICROPYPATH=os.path.join(ROOT, "lib") + ":" + SIMFS))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines() == [
        "['04A1B2C3', '04112233445566', '0411223344556677889A']", "True 1", "False"]



def test_a_scan_of_an_empty_field_waits_600_us_for_an_answer(rig, monkeypatch):
    """A card's answer to a WUPA is in after about 0.37 ms: a scan of an empty field gives up
    after 0.6 ms of the busy wait (it waited 1-2 ms, whole ticks of a millisecond, and at
    first the chip's 25 ms timer), counted here on a clock that moves 100 us a look."""
    import chargepoint.hardware.mfrc522 as driver

    us = [0]

    def ticks_us():
        us[0] += 100
        return us[0]
    monkeypatch.setattr(driver, "_ticks_us", ticks_us)
    reads = []
    real = rig.reader._read
    rig.reader._read = lambda reg: reads.append(reg) or real(reg)
    assert rig.scan() == []
    assert reads.count(0x04) == 6  # ComIrqReg, read until 600 us had passed
