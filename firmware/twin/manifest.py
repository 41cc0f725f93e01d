# The host twin with our firmware frozen in: the same app manifest as the ESP32 image
# (the ESP32 board manifest itself is left out: its modules/ need the esp32 port).
include("../app_manifest.py")
# The simulated board, machine, network and device models stand where a board's
# peripherals are (tools/sim.py; host only).
freeze("../../tools/simfs")
