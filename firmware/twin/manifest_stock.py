# The host twin without our code: a stock ESP32 image plus aiorepl, as far as Python goes.
include("../stock_manifest.py")
# The simulated board, machine, network and device models stand where a board's
# peripherals are (tools/sim.py; host only).
freeze("../../tools/simfs")
