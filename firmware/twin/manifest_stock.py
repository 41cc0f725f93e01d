# The host twin without our code: a stock ESP32 image plus aiorepl, as far as Python goes.
include("../stock_manifest.py")
# The simulated board stands where a board's drivers are (tools/sim.py; host only).
module("board_sim.py", base_path="../../tools/simfs")
