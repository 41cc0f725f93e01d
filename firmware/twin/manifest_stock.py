# The host twin without our code: a stock ESP32 image plus aiorepl, as far as Python goes.
include("../stock_manifest.py")
