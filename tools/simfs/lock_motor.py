"""Simulated cable-lock actuator (host only): motor inputs, the bolt, a feedback switch.

    m = lock_motor.LockMotor()
    machine.wire(18, m.lock_port); machine.wire(19, m.unlock_port)   # the H-bridge inputs
    machine.wire(39, m.feedback)                                     # the bolt switch

A motor input at `active` moves the bolt (locked / unlocked) unless `jam`; `hold=True` is a
solenoid on lock_port alone (the bolt follows its level). `shorted` records both H-bridge
inputs ever on together; `moves` counts motor pulses.
"""


class _Motor:
    def __init__(self, owner, locks):
        self.owner = owner
        self.locks = locks
        self.on = False

    def drive(self, level):
        owner = self.owner
        self.on = level == owner.active
        if owner.lock_port.on and owner.unlock_port.on:
            owner.shorted = True
        if self.on:
            owner.moves += 1
            if not owner.jam:
                owner.bolt = self.locks
        elif owner.hold and self.locks and not owner.jam:
            owner.bolt = False


class _Switch:
    def __init__(self, owner):
        self.owner = owner

    def level(self):
        on = self.owner.feedback_active
        return on if self.owner.bolt else 1 - on


class LockMotor:
    def __init__(self, active=1, feedback_active=1, hold=False, bolt=False):
        self.active = active
        self.feedback_active = feedback_active
        self.hold = hold
        self.bolt = bolt
        self.jam = False
        self.shorted = False
        self.moves = 0
        self.lock_port = _Motor(self, True)
        self.unlock_port = _Motor(self, False)
        self.feedback = _Switch(self)
