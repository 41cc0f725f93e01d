"""Safety path on a machine.Timer: opens the relay on unplug, pilot fault or RCD trip by itself."""
import machine
from micropython import const

_PERIOD_MS = const(20)


def all_off(connectors):
    """Open every relay and stop every PWM (when the main loop ends). Each connector is tried
    even when another one fails; the first error is raised afterwards."""
    error = None
    for hw in connectors:
        try:
            hw.relay.set(False)
        except Exception as e:  # the others must still be switched off
            error = error or e
        try:
            hw.pilot.offer(None)
        except Exception as e:
            error = error or e
    if error is not None:
        raise error


class Guard:
    """Every `period_ms` (a soft timer, scheduled like the ESP32's: it runs while the asyncio
    loop is busy in Python code or sleeping, but not during a blocking C call such as a TLS
    handshake) each connector's pilot takes a burst (`pilot.sample()`). When the EV is not in
    C/D, the diode is missing or the RCD has tripped, the relay opens at once; on anything but
    B the PWM is withdrawn too (in B the EV only paused: the model's offer stands). It never
    closes a relay and never starts PWM: the charger model does, on its next step, from the
    same readings (a state the guard acted on is reported to it even if it has passed).
    start() also installs `relay.interlock` = allows(): a model step that read C just before a
    tick saw the EV leave closes nothing.

    `connectors`: the board's connector hardware with this package's Pilot and Relay
    (`pilot.sample()`, `pilot.now`, `pilot.diode_fault`, `pilot.duty`, `relay.interlock`).
    `timer_id`: the hardware timer (ESP32: 0-3) to use.

    A failure inside a check switches everything off (all_off) and counts in `failures`.
    """

    def __init__(self, connectors, period_ms=_PERIOD_MS, timer_id=0):
        self.connectors = connectors
        self.period_ms = period_ms
        self.timer_id = timer_id
        self.failures = 0
        self._timer = None

    def start(self):
        for hw in self.connectors:
            hw.relay.interlock = self._interlock(hw)
        self.check()
        self._timer = machine.Timer(self.timer_id)
        self._timer.init(mode=machine.Timer.PERIODIC, period=self.period_ms,
                         callback=self._tick)

    def stop(self):
        if self._timer is not None:
            self._timer.deinit()
            self._timer = None

    def check(self):
        for hw in self.connectors:
            self._check(hw)

    def _tick(self, timer):
        try:
            self.check()
        except Exception:  # fail safe, and keep the timer alive
            self.failures += 1
            try:
                all_off(self.connectors)
            except Exception:  # counted above; the next tick tries again
                pass

    def _interlock(self, hw):
        return lambda: self.allows(hw)

    def allows(self, hw):
        """Whether the relay may be closed now, on the pilot's last reading (no new burst)."""
        pilot = hw.pilot
        if pilot.diode_fault:
            return False
        rcd = hw.rcd
        if rcd is not None and rcd.tripped():
            return False
        state = pilot.now
        return state == "C" or state == "D"

    def _check(self, hw):
        pilot = hw.pilot
        state = pilot.sample()
        rcd = hw.rcd
        fault = pilot.diode_fault or (rcd is not None and rcd.tripped())
        if not fault and (state == "C" or state == "D"):
            return
        relay = hw.relay
        if relay.get():
            relay.set(False)
        # in B the EV only paused: the model's offer stands
        if (fault or state != "B") and pilot.duty is not None:
            pilot.offer(None)
