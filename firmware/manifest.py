# Frozen manifest of the ESP32 image: the stock board contents plus our firmware.
# Build: see firmware/README.md (FROZEN_MANIFEST=<abs path of this file>).
include("$(PORT_DIR)/boards/manifest.py")
include("app_manifest.py")
