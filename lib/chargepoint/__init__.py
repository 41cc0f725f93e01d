"""OCPP 1.6J charge point firmware: protocol core, charger model and device glue."""
