"""The pure OCPP-J 1.6 protocol core: framing and RPC engine, field rules, CALLERROR, config keys.

It imports nothing but its own modules, `micropython` and `json`: the transport, the clock and
the store are handed to it, so the same code runs under CPython pytest and on the device.
"""
