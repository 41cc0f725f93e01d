# Runs after boot.py: hand over to the charge point firmware. The boots that fail are counted
# (chargepoint.bootguard): after 5 in a row it starts in safe mode, to be repaired remotely.
# An exception resets the board (its traceback first, on the console); Ctrl-C is not an
# Exception: it still gives the REPL.
from chargepoint import bootguard

safe = bootguard.begin()
try:
    import chargepoint.app

    chargepoint.app.run(safe=safe)
except Exception as e:
    bootguard.failed(e)
