"""The fleet bridge's test world: Mosquitto (with a `spy` identity that reads every charger's
/in and /out, the wire's own record of the frames), bridge processes, firmware twins and light
MQTT chargers, all on loopback. Used by tests/test_bridge*.py."""
import asyncio
import json

import pytest

from broker_fixtures import Peer
from test_e2e import Sim
from tools.broker import Broker
from tools.bridge.process import BridgeProcess
from tools.bridge.shard import shard_of
from tools.lightcharger import LightCharger, tls_context

KEY = "00112233445566778899AABBCCDDEEFF"
T = 20


class SpyBroker(Broker):
    """The stand-in with one more identity, `spy`, reading every charger's frames both ways."""

    def _write_config(self):
        super()._write_config()
        with open(self.acl_path, "a") as f:
            f.write("\nuser spy\ntopic read +/in\ntopic read +/out\n")


class World:
    def __init__(self, pki, broker, tmp_path):
        self.pki, self.broker, self.tmp = pki, broker, tmp_path
        self.spy = Peer(broker, "spy").connect()
        self.spy.subscribe("+/in")
        self.spy.subscribe("+/out")
        self.wire = []  # (topic, payload) as the spy saw them, in order
        self.bridges, self.sims, self.lights = [], [], []

    def bridge(self, csms_url, index=0, count=1, **options):
        cert, key = self.pki.client("bridge-%d" % index)
        b = BridgeProcess(str(self.tmp / ("bridge-%d.log" % index)), "127.0.0.1:%d" %
                          self.broker.port, self.pki.ca, cert, key, csms_url,
                          shard="%d/%d" % (index, count), **options)
        self.bridges.append(b)
        return b

    def auth_file(self, keys):
        path = self.tmp / "auth.json"
        path.write_text(json.dumps(keys))
        return str(path)

    def sim(self, cp_id="CP001"):
        s = Sim(self.broker, self.pki, self.tmp / ("state-" + cp_id), cp_id=cp_id)
        self.sims.append(s)
        return s

    def light(self, cp_id):
        cert, key = self.pki.client(cp_id)
        charger = LightCharger(cp_id, "127.0.0.1", self.broker.port,
                               tls_context(self.pki.ca, cert, key))
        self.lights.append(charger)
        return charger

    def drain(self):
        """What the spy saw since the last call, appended to `wire`."""
        while not self.spy.messages.empty():
            self.wire.append(self.spy.messages.get())
        return self.wire

    def on_wire(self, cp_id, suffix):
        """The payloads of <cp_id>/<suffix> the spy saw, in order."""
        topic = cp_id + "/" + suffix
        return [payload for t, payload in self.drain() if t == topic]

    def run(self, scenario):
        """asyncio.run(scenario()), the light chargers cut at its end (they live in its loop)."""
        async def wrapped():
            try:
                await asyncio.wait_for(scenario(), 180)
            finally:
                for charger in self.lights:
                    await charger.abort()
        asyncio.run(wrapped())

    def close(self):
        for b in self.bridges:
            b.kill()
        for s in self.sims:
            s.stop()
        self.spy.close()


def cs_frames(cs, cp_id, direction):
    """The frames the Central System recorded for `cp_id` in `direction`, as bytes."""
    charger = cs.chargers.get(cp_id)
    return [f.text.encode("utf-8") for f in charger.frames if f.direction == direction] \
        if charger else []


async def wire_matches(world, cs, cp_id, timeout=T):
    """Wait until the spy saw as many frames both ways as the Central System recorded, then
    return ((wire in, Central System in), (wire out, Central System out))."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        pairs = ((world.on_wire(cp_id, "in"), cs_frames(cs, cp_id, "in")),
                 (world.on_wire(cp_id, "out"), cs_frames(cs, cp_id, "out")))
        if all(len(a) == len(b) for a, b in pairs) or loop.time() > deadline:
            return pairs
        await asyncio.sleep(0.05)


async def until(predicate, timeout=T):
    """Wait until predicate() holds (checked every 20 ms); AssertionError after `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "not within %s s" % timeout
        await asyncio.sleep(0.02)


def open_sessions(cs, cp_id):
    charger = cs.chargers.get(cp_id)
    return [s for s in charger.sessions if s.open] if charger else []


def in_shard(ids, index, count):
    return [i for i in ids if shard_of(i, count) == index]


@pytest.fixture
def make_bridge_world(make_pki, tmp_path):
    """make_bridge_world(**Broker kwargs) -> World on a fresh SpyBroker; all stopped after."""
    made = []

    def make(**broker_kwargs):
        broker = SpyBroker(str(tmp_path / "broker"), pki_dir=make_pki("bridge-pki").dir,
                           **broker_kwargs).start()
        made.append(World(make_pki("bridge-pki"), broker, tmp_path))
        return made[-1]

    yield make
    for world in made:
        world.close()
        world.broker.stop()
        for s in world.sims:
            assert s.healthy(), s.bad_log()


@pytest.fixture
def bridge_world(make_bridge_world):
    return make_bridge_world()
