"""OCTT TC_013 / TC_014 through the real transport and charge point (fake broker, fake clock):
after a reset the broker resumes the charger's persistent session, and a ChangeAvailability
the Central System sends once it has answered our BootNotification is fresh, however soon
after the CONNACK it comes: Accepted, and the connector Available again."""
import json

import pytest

from chargepoint.model.chargepoint import ChargePoint
from chargepoint.platform.clock import Clock
from chargepoint.transport.mqtt import MqttTransport
from chargepoint.transport.tls import TlsLink
from conftest import central_system, validate_outgoing
from tools.fakes import FakeBoard, FakeNet, FakeTicks, MemoryStore

OUT = b"CP001/out"
TAG = "04A1B2C3D4"


class Charger:
    """One boot of the charger: a transport and a charge point on the broker's session and
    the flash (`files`) that outlive it."""

    def __init__(self, net, ticks, files, board):
        self.net = net
        self.ticks = ticks
        self.t = MqttTransport("CP001", "broker.example", ssl=TlsLink(None), ticks_ms=ticks,
                               client_factory=net.factory, rand=lambda n: 0)
        self.reboots = []
        self.cp = ChargePoint(board, self.t, MemoryStore(files), clock=Clock(ticks_ms=ticks),
                              reboot=self.reboots.append)
        self.cs = central_system(None, ticks)
        self.seen = len(net.published)
        self.inbound = {}
        self.answers = {}
        self.then = {}  # action of ours -> frames the Central System sends right after its answer

    def turn(self, ms=20):
        self.ticks.advance(ms)
        self.t.step()
        self.cp.loop()
        for _, raw, _ in self.net.published[self.seen:]:
            msg = validate_outgoing(raw.decode(), self.inbound)
            if msg[0] == 2:
                self.net.pending.append((OUT, self.cs.reply(*msg[1:]).encode()))
                self.net.pending += [(OUT, f) for f in self.then.pop(msg[2], ())]
            else:
                self.answers[msg[1]] = msg
        self.seen = len(self.net.published)

    def run(self, ms):
        for _ in range(ms // 20):
            self.turn()

    def send(self, uid, action, payload):
        self.inbound[uid] = action
        self.net.pending.append((OUT, json.dumps([2, uid, action, payload]).encode()))

    def ask(self, uid, action, payload):
        self.send(uid, action, payload)
        for _ in range(50):
            self.turn()
            if uid in self.answers:
                return self.answers[uid][2]
        raise AssertionError("no answer to %s" % uid)


@pytest.mark.parametrize("how", ["Hard", "Soft", "Hard-during-tx", "Soft-during-tx",
                                 "power-cut-with-scheduled-change"])
def test_operative_after_a_reset_is_accepted_however_soon_it_comes(how):
    ticks = FakeTicks()
    net = FakeNet(ticks)
    files = {}
    board = FakeBoard()
    first = Charger(net, ticks, files, board)
    first.run(2000)
    assert first.cp.registration == "Accepted"
    during_tx = how.endswith("tx") or how.startswith("power")
    if during_tx:
        board.rfid.present(TAG)
        board.connectors[0].pilot.ev = "C"
        first.run(2000)
        assert first.cp.connectors[0].tx is not None
    expected = "Scheduled" if during_tx else "Accepted"
    assert first.ask("a1", "ChangeAvailability", {"connectorId": 1, "type": "Inoperative"}) == \
        {"status": expected}
    if how.startswith("power"):
        first.t.close()  # the power goes: the session stays on the broker
    else:
        assert first.ask("r1", "Reset", {"type": how.split("-")[0]}) == {"status": "Accepted"}
        first.run(4000)
        assert first.reboots == [how.startswith("Hard")]
        first.t.close()
    board.connectors[0].pilot.ev = "A"
    net.session_present = True
    second = Charger(net, ticks, files, board)
    # the Central System's test tool: Operative the moment the BootNotification is answered
    second.inbound["a2"] = "ChangeAvailability"
    second.then["BootNotification"] = [
        json.dumps([2, "a2", "ChangeAvailability", {"connectorId": 1, "type": "Operative"}])
        .encode()]
    for _ in range(50):
        second.turn()
        if "a2" in second.answers:
            break
    assert second.answers["a2"][2] == {"status": "Accepted"}
    assert ticks.now - net.connects[-1] < second.t.stale.window_ms  # inside the old window
    second.run(1000)
    assert second.cp.connectors[0].status == "Available"
    assert second.cp.stale_rejected == 0
