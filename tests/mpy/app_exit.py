"""Whatever ends the firmware's main loop leaves every relay open and every pilot without PWM.

Usage: micropython app_exit.py KIND   (MICROPYPATH: .frozen and the folder with fakes.mpy,
tools/fakes.py compiled)
KIND: "error" (a bug raises in the loop) or "memory" (MemoryError). A session runs offline
(AllowOfflineTxForUnknownId), so relays are closed and PWM on when the loop dies; prints one
JSON line with what the board was in then and is left in.
"""
import json
import os
import sys

import chargepoint.app as app
from fakes import FakeBoard

kind = sys.argv[1]
board = FakeBoard(2)
for hw in board.connectors:
    hw.pilot.ev = "C"
data = "data"  # in the working directory, a fresh one per run
try:
    os.mkdir(data)
except OSError:
    pass
with open(data + "/config", "w") as f:
    json.dump({"AllowOfflineTxForUnknownId": "true"}, f)


class DyingReader:
    polls = 0
    failed = False
    live = None  # relays and pilots when it died

    def poll(self):
        DyingReader.polls += 1
        if DyingReader.polls in (1, 2):
            return "DEADBEE%d" % DyingReader.polls  # a session on each connector
        if DyingReader.polls == 10:
            DyingReader.live = [[hw.relay.closed for hw in board.connectors],
                                [hw.pilot.amps for hw in board.connectors]]
            raise MemoryError() if kind == "memory" else RuntimeError("a bug")
        return None


class Transport:
    connected = False
    status = {}

    def start(self):
        pass

    def stop(self):
        pass

    def can_send(self):
        return False

    def receive(self):
        return None


board.rfid = DyingReader()
app.load_config = lambda path: {"id": "CP001", "hardware": {}, "repl": False, "transport": "mqtt",
                                "wifi": {"ssid": "", "password": ""}, "mqtt": {}}
app.build_board = lambda cfg, store: board
app.build_transport = lambda cfg, *args: Transport()
ended = None
try:
    app.run(data_dir=data)
except Exception as e:  # noqa: B902  (MemoryError included: it is what we test)
    ended = type(e).__name__
print(json.dumps({"ended": ended, "polls": DyingReader.polls, "live": DyingReader.live,
                  "relays": [hw.relay.closed for hw in board.connectors],
                  "pilots": [hw.pilot.amps for hw in board.connectors]}))
