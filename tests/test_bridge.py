"""The fleet bridge end to end: the unmodified firmware on the twin over MQTT -> Mosquitto ->
`python3 -m tools.bridge` -> the Central System on mobilityhouse ocpp + websockets; the frames
on the wire (the broker's spy) and at the Central System compared byte for byte. Presence,
refusals and the subprotocol check with light MQTT chargers."""
import asyncio
import os
import shutil
import subprocess
import sys

import pytest
from websockets.asyncio.server import serve

from bridge_world import (KEY, T, bridge_world, cs_frames, make_bridge_world,  # noqa: F401
                          open_sessions, until, wire_matches)
from test_e2e import online
from test_e2e_websocket import rfid_and_remote_sessions
from tools.bridge import shard
from tools.csms_websocket import WebSocketCentralSystem, server_tls_context

pytestmark = pytest.mark.usefixtures("twins")

CLOSE_BOUND_S = 3.0  # README: the broker's notice + LINGER_S (1 s) + the closing handshake


def test_a_session_remote_start_configuration_and_reset_pass_through_unchanged(bridge_world):
    world = bridge_world

    async def scenario():
        async with WebSocketCentralSystem(keys={"CP001": KEY}) as cs:
            await world.bridge(cs.url, auth=world.auth_file({"CP001": KEY})).start()
            sim = world.sim()
            cp = await online(sim, cs)
            assert cp.sessions[-1].basic_user == "CP001"  # Basic with the charger's key
            assert cp.sessions[-1].subprotocol == "ocpp1.6"
            await rfid_and_remote_sessions(sim, cs, cp)
            conf = await cs.get_configuration("CP001", ["MeterValueSampleInterval"])
            assert conf["configurationKey"][0]["value"] == "1"
            assert (await cs.reset("CP001", "Soft"))["status"] == "Accepted"
            await cs.wait_for(lambda: len(cp.boots) == 2, T)
            await sim.until(lambda s: s["boots"] == 2 and s["online"])
            (wire_in, cs_in), (wire_out, cs_out) = await wire_matches(world, cs, "CP001")
            assert wire_in == cs_in  # every frame the charger published, as it published it
            assert wire_out == cs_out  # every frame the Central System sent, as it sent it
            actions = [m[2] for m in (f.message() for f in cp.frames if f.direction == "in")
                       if m[0] == 2]
            for action in ("BootNotification", "Authorize", "StartTransaction", "MeterValues",
                           "StopTransaction"):
                assert action in actions
    world.run(scenario)


def test_a_charger_that_leaves_the_broker_has_its_websocket_closed_and_reopened(bridge_world):
    world = bridge_world

    async def scenario():
        async with WebSocketCentralSystem() as cs:
            await world.bridge(cs.url).start()
            charger = await world.light("CP-P1").connect()
            await charger.publish('[2,"p1","Heartbeat",{}]')
            await cs.wait_for(lambda: open_sessions(cs, "CP-P1"), T)
            for leave in (charger.close, charger.abort):  # DISCONNECT, then the TCP link cut
                left = asyncio.get_running_loop().time()
                await leave()
                await cs.wait_for(lambda: not open_sessions(cs, "CP-P1"), T)
                took = asyncio.get_running_loop().time() - left
                assert took < CLOSE_BOUND_S, took
                assert cs.chargers["CP-P1"].sessions[-1].close_code == 1001
                # back on the broker: open again, with no frame needed (a known charger)
                await charger.connect()
                await cs.wait_for(lambda: open_sessions(cs, "CP-P1"), CLOSE_BOUND_S)
            assert len(cs.chargers["CP-P1"].sessions) == 3
    world.run(scenario)


def test_a_refused_charger_is_dropped_and_does_not_stall_the_others(bridge_world):
    world = bridge_world

    async def scenario():
        async with WebSocketCentralSystem(keys={"CP-R1": KEY}, chargers=["CP-R2"]) as cs:
            bridge = await world.bridge(cs.url, auth=world.auth_file({"CP-R1": "FF" * 16})).start()
            refused, welcome = [await world.light(i).connect() for i in ("CP-R1", "CP-R2")]
            for n in range(30):  # more than the broker's in-flight window (20)
                await refused.publish('[2,"r%d","Heartbeat",{}]' % n)
            await welcome.publish('[2,"w1","Heartbeat",{}]')
            await cs.wait_for(lambda: cs_frames(cs, "CP-R2", "in"), T)
            await cs.wait_for(lambda: len(cs_frames(cs, "CP-R2", "out")) == 1, T)
            assert any(r.status == 401 and r.charger_id == "CP-R1" for r in cs.refusals)
            assert not cs_frames(cs, "CP-R1", "in")
            while (await bridge.metrics())["bridge_frames_dropped_total"] < 30:
                await asyncio.sleep(0.05)
            assert (await bridge.metrics())["bridge_frames_held"] == 0
    world.run(scenario)


def test_a_central_system_that_does_not_agree_ocpp16_is_refused(bridge_world):
    world = bridge_world

    async def scenario():
        heard = []

        async def handler(connection):
            async for message in connection:
                heard.append(message)

        # a WebSocket server that offers no subprotocol: the handshake completes without one
        async with serve(handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            bridge = await world.bridge("ws://127.0.0.1:%d/ocpp" % port).start()
            charger = await world.light("CP-S1").connect()
            await charger.publish('[2,"s1","Heartbeat",{}]')
            while (await bridge.metrics())["bridge_frames_dropped_total"] < 1:
                await asyncio.sleep(0.05)
            assert heard == []
            assert '"event": "refused"' in bridge.log_tail()
    world.run(scenario)


def test_a_pool_of_connections_carries_each_chargers_answers_on_its_own(make_bridge_world):
    # one identity, several client ids: as on AWS with the policy's bridge-*; the stand-in
    # then takes the client id from the CONNECT, not from the certificate
    world = make_bridge_world(clientid_from_cert=False)
    ids = ["CP-K%02d" % i for i in range(12)]
    assert {shard.connection_of(i, 1, 3) for i in ids} == {0, 1, 2}

    async def scenario():
        async with WebSocketCentralSystem() as cs:
            bridge = await world.bridge(cs.url, extra=["--connections", "3"]).start()
            chargers = [await world.light(i).connect() for i in ids]
            for n in range(5):
                await asyncio.gather(*(c.publish('[2,"k%d","Heartbeat",{}]' % n)
                                       for c in chargers))
            await until(lambda: all(len(c.received) == 5 for c in chargers))
            for cp_id in ids:
                (wire_in, cs_in), (wire_out, cs_out) = await wire_matches(world, cs, cp_id)
                assert len(wire_in) == len(wire_out) == 5
                assert wire_in == cs_in and wire_out == cs_out
            metrics = await bridge.metrics()
            assert metrics["bridge_mqtt_connections_up"] == 3
            published = [metrics['bridge_mqtt_publishes_total{connection="%d"}' % k]
                         for k in range(3)]
            assert published == [5.0 * sum(1 for i in ids if shard.connection_of(i, 1, 3) == k)
                                 for k in range(3)]
    world.run(scenario)


def test_wss_with_a_client_certificate_per_charger_security_profile_3(bridge_world, tmp_path):
    world = bridge_world
    pki = world.pki
    certs = tmp_path / "certs"  # --certs DIR: <id>.pem and <id>.key
    certs.mkdir()
    for cp_id in ("CP-T1", "CP-T2"):
        cert, key = pki.client(cp_id)
        shutil.copy(cert, certs / (cp_id + ".pem"))
        shutil.copy(key, certs / (cp_id + ".key"))

    async def scenario():
        server_cert, server_key = pki.server()
        tls = server_tls_context(server_cert, server_key, pki.ca)  # a client certificate required
        async with WebSocketCentralSystem(ssl=tls) as cs:
            url = "wss://localhost:%d/ocpp" % cs.port
            await world.bridge(url, csms_ca=pki.ca, certs=str(certs)).start()
            for cp_id in ("CP-T1", "CP-T2"):
                charger = await world.light(cp_id).connect()
                await charger.publish('[2,"t1","Heartbeat",{}]')
                await cs.wait_for(lambda: cs_frames(cs, cp_id, "out"), T)
                assert cs.chargers[cp_id].certificate_cn == cp_id
    world.run(scenario)


def test_the_container_holds_all_the_bridge_imports(tmp_path):
    """The Dockerfile copies a few files and installs paho-mqtt and websockets: the bridge
    must start from exactly those."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "Dockerfile")) as f:
        copies = [line.split()[1:] for line in f if line.startswith("COPY ")]
    for *sources, target in copies:
        for source in sources:
            path = os.path.join(root, source)
            if os.path.isdir(path):
                shutil.copytree(path, tmp_path / source)
            else:
                os.makedirs(tmp_path / target, exist_ok=True)
                shutil.copy(path, tmp_path / target)
    probe = ("import sys, tools, tools.bridge.__main__; print(tools.__file__); "
             "print(sorted({m.split('.')[0] for m in sys.modules}))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True,
                         text=True, env={"PATH": os.environ["PATH"]}, check=True).stdout
    assert out.startswith(str(tmp_path))  # the copy, not the repository
    for heavy in ("ocpp", "aiomqtt", "cryptography", "jsonschema"):
        assert "'%s'" % heavy not in out
    help_text = subprocess.run([sys.executable, "-m", "tools.bridge", "--help"], cwd=tmp_path,
                               capture_output=True, text=True, check=True).stdout
    assert "--shard I/N" in help_text and "--csms-ca" in help_text


def test_after_the_presence_news_broke_off_a_charger_not_heard_of_again_is_closed(
        bridge_world):
    world = bridge_world

    async def scenario():
        async with WebSocketCentralSystem() as cs:
            await world.bridge(cs.url, extra=["--presence-grace", "2"]).start()
            back, gone = [await world.light(i).connect() for i in ("CP-G1", "CP-G2")]
            for charger in (back, gone):
                await charger.publish('[2,"g1","Heartbeat",{}]')
            # the answers are out: the bridge's PUBACKs for the frames went before them
            await until(lambda: back.received and gone.received)
            # every connection drops, the news of it with them; the bridge connects again
            await asyncio.to_thread(world.broker.restart)
            await until(lambda: world.broker.log_tail(100000).count(" as bridge-0 (") == 2)
            restarted = asyncio.get_running_loop().time()
            await back.connect()  # heard of again: its news says so
            await cs.wait_for(lambda: not open_sessions(cs, "CP-G2"), T)
            took = asyncio.get_running_loop().time() - restarted
            assert 1.5 <= took < 2 + CLOSE_BOUND_S, took  # the grace, then as any departure
            assert len(open_sessions(cs, "CP-G1")) == 1
            assert len(cs.chargers["CP-G1"].sessions) == 1  # never closed
    world.run(scenario)
