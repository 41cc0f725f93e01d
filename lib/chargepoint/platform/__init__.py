"""What the firmware takes from the MicroPython runtime: the clock (`time`) and the flash store.

The composition root builds these and hands them to the model; the transport reads the clock.
"""
