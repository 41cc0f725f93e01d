"""Simulated contactor (host only): coil input(s), an auxiliary contact, a weld that sticks.

    k = contactor.Contactor(coils=2)
    machine.wire(26, k.coils[0]); machine.wire(27, k.coils[1])   # the coil drivers
    machine.wire(34, k.feedback)                                 # the auxiliary contact

The contact closes while every coil is energised (`active` level) and opens when one is not,
unless `welded`: then, once closed, it stays closed. `closes` counts how often it closed.
"""


class _Coil:
    def __init__(self, owner):
        self.owner = owner
        self.energised = False

    def drive(self, level):
        self.energised = level == self.owner.active
        self.owner._update()


class _Contact:
    def __init__(self, owner):
        self.owner = owner

    def level(self):
        on = self.owner.feedback_active
        return on if self.owner.closed else 1 - on


class Contactor:
    def __init__(self, coils=1, active=1, feedback_active=1):
        self.active = active
        self.feedback_active = feedback_active
        self.coils = [_Coil(self) for _ in range(coils)]
        self.coil = self.coils[0]
        self.feedback = _Contact(self)
        self.closed = False
        self.welded = False
        self.closes = 0
        self.on_change = None  # f(closed) after the contact moved (a test's stopwatch)

    def _update(self):
        energised = True
        for c in self.coils:
            energised = energised and c.energised
        was = self.closed
        if energised and not self.closed:
            self.closed = True
            self.closes += 1
        elif not energised and not self.welded:
            self.closed = False
        if self.closed != was and self.on_change is not None:
            self.on_change(self.closed)
