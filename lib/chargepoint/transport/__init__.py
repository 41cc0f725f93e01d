"""Carrying OCPP-J frames: MQTT over mutual TLS to AWS IoT Core, never blocking the model."""
