# The libraries our firmware needs besides MicroPython itself: what the stock ESP32 image
# freezes (asyncio, umqtt.simple) plus aiorepl (`mpremote mip install aiorepl` on a stock
# device). The ESP32 board manifest includes the first two as well; that is harmless, a
# manifest or package is frozen once however often it is included.
include("$(MPY_DIR)/extmod/asyncio")
require("umqtt.simple")  # 1.7.0 from the micropython-lib the MicroPython tag pins; brings ssl
require("aiorepl")
