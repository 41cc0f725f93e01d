"""The simulation's own share of the live heap, for the figures `make bench` keeps apart (host
only; every figure 0 under CPython).

The simulated built-in modules (machine, network, ntptime, esp32) are C in the ESP32's flash,
and the objects the drivers make of them (Pin, PWM, ADC, SPI, UART, Timer, WDT, WLAN) are C
structs there: a few dozen bytes each, outside the Python heap for the static ones (Pin, ADC,
WLAN). Here they are Python, in the firmware's heap. Each module records what its import
took (`imports`), and the simulated machine what each object made while the board builds its
drivers took (`objects`; board_sim turns `counting` on for that): the live heap after a
collection, before and after. Objects made later (a PWM started again) replace earlier ones
and are not counted, nor is an object's own header (its first 16-32 bytes, allocated before
__init__ runs): the figures leave the simulation a little short, never the firmware."""
import gc
import sys

_ON_TWIN = sys.implementation.name == "micropython"
imports = {}  # simulated module name -> live heap its import took
objects = [0]  # live heap of the simulated objects made while counting (bytes)
counting = [False]


def live():
    if not _ON_TWIN:
        return 0
    gc.collect()
    return gc.mem_alloc()


def imported(name, before):
    imports[name] = live() - before


def counted(cls):
    """Count what each instance of `cls` takes when made (its __init__ wrapped)."""
    if not _ON_TWIN:
        return cls
    init = cls.__init__

    def __init__(self, *args, **kw):
        if not counting[0]:
            init(self, *args, **kw)
            return
        before = live()
        init(self, *args, **kw)
        objects[0] += live() - before

    cls.__init__ = __init__
    return cls


def share():
    """Bytes of the simulated built-ins: their imports and their objects."""
    return sum(imports.values()) + objects[0]
