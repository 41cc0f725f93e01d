# Runs after boot.py: hand over to the charge point firmware.
try:
    import chargepoint.app

    chargepoint.app.run()
except Exception as e:
    # A new firmware on trial that fails resets the board, so that the next boot counts it
    # and the old firmware comes back (chargepoint.platform.update); else the traceback
    # stays on the console, at the REPL.
    import os
    import sys

    sys.print_exception(e)
    try:
        os.stat("data/fwupdate")
    except OSError:
        raise e
    import machine

    machine.reset()
