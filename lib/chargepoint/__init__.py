"""OCPP 1.6J charge point firmware, one package per layer; `app` wires them together.

ocpp       the pure protocol core (imports no other layer)
model      the charger model, on the core
transport  MQTT to the Central System
hardware   board drivers
platform   clock and flash store on the MicroPython runtime
"""
