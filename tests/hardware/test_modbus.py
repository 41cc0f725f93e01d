"""Modbus RTU master against the SDM meter model (a slave on the simulated UART)."""
import struct

import machine  # tools/simfs/machine.py, on sys.path through conftest.py
import pytest
from sdm_model import SdmModel

from chargepoint.hardware.modbus import DATA, Modbus, ModbusError, crc16

UART_ID, DE_PIN = 2, 4


class Recorder(SdmModel):
    """The meter model, keeping every frame that reached it."""

    def __init__(self, *a, **kw):
        SdmModel.__init__(self, *a, **kw)
        self.frames = []

    def rx(self, data):
        if not self.de.wired or self.de.high:
            self.frames.append(bytes(data))
        SdmModel.rx(self, data)


@pytest.fixture
def meter():
    m = Recorder(slave=1, phases=3, volts=230.0, load=16.0, energy_kwh=12.5)
    machine.wire_bus("uart", UART_ID, m)
    return m


@pytest.fixture
def bus(meter, ticks):
    return Modbus(machine.UART(UART_ID, 9600), ticks_ms=ticks)


def wait(bus, ticks, step=1, limit=2000):
    """Call result() every `step` ms until it answers; (answer or ModbusError, ms taken)."""
    for ms in range(0, limit, step):
        try:
            rx = bus.result()
        except ModbusError as e:
            return e, ms
        if rx is not None:
            return rx, ms
        ticks.advance(step)
    raise AssertionError("no outcome")


def test_crc16_of_a_known_request():
    frame = bytes.fromhex("010400000002")
    assert crc16(frame, 6) == 0xCB71  # on the wire: 01 04 00 00 00 02 71 CB


def test_read_input_registers_exact_frames(bus, meter, ticks):
    bus.request(1, 0x48, 2)
    assert meter.frames == [bytes.fromhex("010400480002F1DD")]
    rx, _ = wait(bus, ticks)
    assert rx[:DATA] == b"\x01\x04\x04"
    assert struct.unpack_from(">f", rx, DATA)[0] == 12.5
    assert not bus.busy


def test_answer_arriving_in_pieces(bus, meter, ticks):
    meter.held = 26
    bus.request(1, 0x00, 12)
    assert bus.result() is None  # 3 of 29 bytes so far
    meter.held = 0
    rx, _ = wait(bus, ticks)
    assert struct.unpack_from(">6f", rx, DATA) == (230.0, 230.0, 230.0, 16.0, 16.0, 16.0)


def test_crc_error_is_retried_then_raised(bus, meter, ticks):
    meter.fault = "crc"
    bus.request(1, 0x48, 2)
    err, _ = wait(bus, ticks)
    assert isinstance(err, ModbusError) and err.kind == "crc"
    assert meter.requests == 2  # the request and one retry
    assert not bus.busy


def test_crc_error_once_recovered_by_the_retry(bus, meter, ticks):
    meter.fault = "crc"
    bus.request(1, 0x48, 2)
    assert bus.result() is None  # bad answer: the retry waits for the inter-frame gap
    meter.fault = "none"
    rx, _ = wait(bus, ticks)
    assert struct.unpack_from(">f", rx, DATA)[0] == 12.5


def test_timeout_from_the_baud_rate(bus, meter, ticks):
    meter.fault = "silent"
    bus.request(1, 0x48, 2)
    err, ms = wait(bus, ticks)
    assert err.kind == "timeout"
    # 17 characters of 11 bits at 9600 baud (19 ms) + 100 ms margin, twice, + the 5 ms gap
    assert ms == 2 * 119 + 5
    assert meter.requests == 2


def test_faster_baud_rate_shorter_timeout(meter, ticks):
    machine.wire_bus("uart", 3, meter)
    bus = Modbus(machine.UART(3, 38400), baudrate=38400, retries=0, margin_ms=20,
                 ticks_ms=ticks)
    meter.fault = "silent"
    bus.request(1, 0x48, 2)
    err, ms = wait(bus, ticks)
    assert err.kind == "timeout" and ms == 17 * 286 // 1000 + 20


def test_answer_from_another_slave(bus, meter, ticks):
    meter.fault = "slave"
    bus.request(1, 0x48, 2)
    err, _ = wait(bus, ticks)
    assert err.kind == "slave"


def test_no_slave_at_that_address_times_out(bus, meter, ticks):
    bus.request(7, 0x48, 2)
    err, _ = wait(bus, ticks)
    assert err.kind == "timeout" and meter.requests == 0


def test_exception_response_is_not_retried(bus, meter, ticks):
    bus.request(1, 0x0100, 2)  # not in the SDM630's map
    err, _ = wait(bus, ticks)
    assert err.kind == "exception" and err.code == 2
    assert meter.requests == 1


def test_inter_frame_gap_before_the_next_request(bus, meter, ticks):
    bus.request(1, 0x48, 2)
    wait(bus, ticks)
    bus.request(1, 0x00, 2)
    assert len(meter.frames) == 1  # 3.5 characters of silence first (5 ms at 9600)
    ticks.advance(5)
    assert bus.result() is None
    assert len(meter.frames) == 2
    wait(bus, ticks)


def test_direction_pin_drives_the_line_only_while_sending(meter, ticks):
    machine.wire(DE_PIN, meter.de)
    de = machine.Pin(DE_PIN)
    bus = Modbus(machine.UART(UART_ID, 9600), de=de, ticks_ms=ticks)
    assert de.value() == 0
    bus.request(1, 0x48, 2)
    assert de.value() == 0 and len(meter.frames) == 1
    rx, _ = wait(bus, ticks)
    assert struct.unpack_from(">f", rx, DATA)[0] == 12.5


def test_without_the_direction_pin_nothing_reaches_the_meter(meter, ticks):
    machine.wire(DE_PIN, meter.de)
    machine.Pin(DE_PIN)  # wired, never driven high
    bus = Modbus(machine.UART(UART_ID, 9600), retries=0, ticks_ms=ticks)
    bus.request(1, 0x48, 2)
    err, _ = wait(bus, ticks)
    assert err.kind == "timeout" and meter.requests == 0


def test_stale_bytes_are_dropped_before_a_request(bus, meter, ticks):
    meter._out = b"\x01\x04garbage"
    bus.request(1, 0x48, 2)
    rx, _ = wait(bus, ticks)
    assert struct.unpack_from(">f", rx, DATA)[0] == 12.5


def test_too_many_registers_refused(bus):
    with pytest.raises(ValueError):
        bus.request(1, 0, 31)


def test_blocking_read_for_commissioning(meter):
    bus = Modbus(machine.UART(UART_ID, 9600))
    assert struct.unpack(">f", bus.read(1, 0x48, 2))[0] == 12.5
