"""CPython stand-in for MicroPython's `micropython` module, so device code imports on the host."""


def const(value):
    return value
