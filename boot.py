# boot.py: runs first on every boot. Before anything else every contactor output is driven to
# open: GPIO levels survive a soft reset, so a relay closed before it would stay closed.
import chargepoint.hardware.esp32

chargepoint.hardware.esp32.open_relays()
