"""Simulated residual-current monitor (host only): a trip output that can trip, a test input.

    m = rcd_model.RcdModel()
    machine.wire(35, m)        # the trip output the driver reads (IRQ through pin.edge)
    machine.wire(33, m.test)   # the test input the driver pulses

trip() / clear() put a real residual current on and off; driving the test input to
`test_active` trips it as a test does, unless `broken` (the self-test then fails);
`stuck` keeps the output tripped after a test ends.
"""


class _TestInput:
    def __init__(self, owner):
        self.owner = owner

    def drive(self, level):
        owner = self.owner
        if level == owner.test_active:
            owner.testing = not owner.broken
        elif not owner.stuck:
            owner.testing = False
        owner._update()


class RcdModel:
    def __init__(self, active=1, test_active=1):
        self.active = active
        self.test_active = test_active
        self.residual = False
        self.testing = False
        self.broken = False
        self.stuck = False
        self.test = _TestInput(self)
        self._pins = []
        self._last = self.level()

    def bind(self, pin):
        self._pins.append(pin)
        pin.edge(self.level())  # the pin starts at the monitor's level (no IRQ handler yet)

    def level(self):
        return self.active if (self.residual or self.testing) else 1 - self.active

    def trip(self):
        self.residual = True
        self._update()

    def clear(self):
        self.residual = False
        self._update()

    def _update(self):
        level = self.level()
        if level != self._last:
            self._last = level
            for p in self._pins:
                p.edge(level)
