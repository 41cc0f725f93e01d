"""The fleet bridge: chargers speaking OCPP-J over MQTT (AWS IoT Core, or tools.broker) on one
side, one WebSocket per charger to any OCPP-J 1.6 Central System on the other, frames moved
byte for byte. `python3 -m tools.bridge --help`; README, "Running a fleet".

core (routing, shards, presence, metrics), link (one charger's WebSocket), mqtt (the broker
connection: persistent session, manual acknowledgements, pacing), presence (lifecycle news),
shard (the hash an AWS IoT rule computes too), http (/healthz, /metrics), logs (JSON lines);
process runs one instance as a process for the tests and the bench.
"""
