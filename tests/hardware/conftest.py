"""Driver tests: the simulated `machine` (tools/simfs) with device models wired to its pins,
a fake clock the drivers read, and a clean wiring for every test."""
import os
import sys

import pytest

SIMFS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "tools", "simfs")
if SIMFS not in sys.path:
    sys.path.insert(0, SIMFS)

import machine  # noqa: E402

from tools.fakes import FakeTicks  # noqa: E402


@pytest.fixture(autouse=True)
def unwired():
    machine.unwire()
    yield
    machine.unwire()


@pytest.fixture
def ticks():
    return FakeTicks()


@pytest.fixture
def sleep(ticks):
    """A sleep_ms that moves the fake clock (and the timers) instead of waiting."""
    def sleep_ms(ms):
        ticks.advance(ms)
        machine.fire_timers(ms)
    return sleep_ms
