# Our firmware frozen into an image: the libraries it needs and the chargepoint package.
# Shared by the ESP32 build (firmware/manifest.py) and the host twin (firmware/twin/).
include("stock_manifest.py")

# Relative paths in a manifest resolve against the manifest's own folder.
package("chargepoint", base_path="../lib")
