"""Board drivers: each implements the board interface defined in chargepoint.model.board.

Drivers take their pins and buses as arguments and create nothing at import time. For now the
composition root (chargepoint.app) imports the top-level module `board_<driver>` its
configuration names (the simulator's is tools/simfs/board_sim.py); the ESP32 drivers go here.
"""
