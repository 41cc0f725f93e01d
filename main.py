# Runs after boot.py: hand over to the charge point firmware.
import chargepoint.app

chargepoint.app.run()
