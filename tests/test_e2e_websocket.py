"""End to end over OCPP-J: the unmodified firmware on the twin at 110000 (tools.sim --transport
websocket) straight to a Central System, for each security profile: an RFID session with
MeterValues, RemoteStart/Stop, GetConfiguration and a Reset; refusals (a wrong key, a wrong
CA, a downgrade); link faults (the Central System restarted mid-session, a message of 200 KB);
a profile upgrade that connects and one that falls back; a new AuthorizationKey mid-session."""
import asyncio
import json
import os

import pytest

from conftest import schema
from test_e2e import HEAP, TAG, T, run
from tools import certs
from tools.csms import WebSocketCentralSystem
from tools.simclient import Simulator

pytestmark = pytest.mark.usefixtures("twins")

KEY = "00112233445566778899AABBCCDDEEFF"


@pytest.fixture
def ws_world(tmp_path):
    pki = certs.ensure_pki(str(tmp_path / "pki"), chargers=("CP001",))
    server_cert, server_key = pki.server()
    sims = []

    def sim(url, **flags):
        s = Simulator("CP001", state=str(tmp_path / ("state-%d" % len(sims))), transport="websocket",
                      url=url, heap=HEAP["frozen"], timeout=T, **flags)
        sims.append(s)
        return s

    def csms(secure=False, keys=None, client_ca=False, port=0, signer=None):
        tls = None
        if secure:
            from tools.csms_websocket import server_tls_context
            tls = server_tls_context(server_cert, server_key, pki.ca if client_ca else None,
                                     client_cert_required=client_ca)
        return WebSocketCentralSystem(port=port, keys=keys, ssl=tls, signer=signer)

    yield pki, sim, csms
    for s in sims:
        s.stop()
    for s in sims:
        assert s.healthy(), s.bad_log()


def profile_flags(pki, profile):
    """The simulator's flags for a charger on security `profile`: its key for Basic (1, 2),
    the Central System's CA (2, 3), its certificate (3)."""
    flags = {"security_profile": profile}
    if profile in (1, 2):
        flags["auth_key"] = KEY
    if profile >= 2:
        flags["ca"] = pki.ca
    if profile == 3:
        flags["cert"], flags["key"] = pki.client("CP001")
    return flags


def url_of(cs, secure=False):
    return "%s://localhost:%d/ocpp" % ("wss" if secure else "ws", cs.port)


async def online(sim, cs):
    await sim.start()
    await cs.wait_for(lambda: "CP001" in cs.chargers and cs.chargers["CP001"].boots, T)
    await sim.until(lambda s: s["online"])
    return cs.chargers["CP001"]


def check_frames(cp):
    import jsonschema
    for frame in cp.frames:
        msg = frame.message()
        if frame.direction == "in" and msg[0] == 2:
            jsonschema.validate(msg[3], schema(msg[2]))


async def rfid_and_remote_sessions(sim, cs, cp):
    """MeterValues every second; a card session with MeterValues, then a remote start and
    stop: each seen through to its StopTransaction at the Central System."""
    await cs.change_configuration("CP001", "MeterValueSampleInterval", "1")
    await sim.ask(cmd="load", connector=1, amps=16.0)
    await sim.ask(cmd="rfid", uid=TAG)
    await sim.ask(cmd="ev", connector=1, state="C")
    await cs.wait_for(lambda: cp.transactions and len(
        list(cp.transactions.values())[0].meter_values) >= 2, T)
    await sim.ask(cmd="rfid", uid=TAG)
    await cs.wait_for(lambda: [t for t in cp.transactions.values() if t.stopped], T)
    assert (await cs.remote_start("CP001", TAG, connector_id=1))["status"] == "Accepted"
    tx = await sim.until(lambda s: s["connectors"]["1"]["transaction_id"] is not None)
    txid = tx["connectors"]["1"]["transaction_id"]
    assert (await cs.remote_stop("CP001", txid))["status"] == "Accepted"
    await cs.wait_for(lambda: cp.transactions[txid].stopped, T)


async def session_remote_configuration_and_reset(sim, cs, cp):
    await rfid_and_remote_sessions(sim, cs, cp)
    conf = await cs.get_configuration("CP001", ["SecurityProfile", "AuthorizationKey"])
    assert conf["unknownKey"] == ["AuthorizationKey"]  # write-only
    profile = conf["configurationKey"][0]["value"]
    assert (await cs.reset("CP001", "Soft"))["status"] == "Accepted"
    await cs.wait_for(lambda: len(cp.boots) == 2, T)
    s = await sim.until(lambda s: s["boots"] == 2 and s["online"])
    assert s["transport"] == "websocket"
    check_frames(cp)
    return profile


@pytest.mark.parametrize("profile", [0, 1, 2, 3])
def test_each_security_profile_runs_a_session_remote_start_configuration_and_reset(
        ws_world, profile):
    pki, make_sim, make_csms = ws_world
    secure = profile >= 2

    async def scenario():
        cs = make_csms(secure=secure, keys={"CP001": KEY} if profile in (1, 2) else None,
                       client_ca=profile == 3)
        async with cs:
            sim = make_sim(url_of(cs, secure), **profile_flags(pki, profile))
            cp = await online(sim, cs)
            assert await session_remote_configuration_and_reset(sim, cs, cp) == str(profile)
            session = cp.sessions[-1]
            assert session.subprotocol == "ocpp1.6"
            if profile == 3:
                assert cp.certificate_cn == "CP001"
            if profile in (1, 2):
                assert session.basic_user == "CP001"
    run(scenario())


def test_a_wrong_key_is_refused_reported_and_backed_off(ws_world):
    pki, make_sim, make_csms = ws_world

    async def scenario():
        async with make_csms(keys={"CP001": KEY}) as cs:
            sim = make_sim(url_of(cs), security_profile=1, auth_key="FF" * 16)
            await sim.start()
            s = await sim.until(lambda s: (s["mqtt"] or {}).get("unauthorized", 0) >= 2, 15)
            assert not s["online"]
            refused = [r for r in cs.refusals if r.charger_id == "CP001"]
            assert refused and all(r.status == 401 for r in refused)
            assert len(refused) <= 4  # backing off: 1 s, 2 s, 4 s...
    run(scenario())


def test_a_wrong_ca_is_never_a_connection(ws_world, tmp_path):
    pki, make_sim, make_csms = ws_world
    stranger = certs.ensure_pki(str(tmp_path / "stranger"), chargers=())

    async def scenario():
        async with make_csms(secure=True, keys={"CP001": KEY}) as cs:
            sim = make_sim(url_of(cs, True), security_profile=2, auth_key=KEY,
                           ca=stranger.ca)
            await sim.start()
            s = await sim.until(lambda s: (s["mqtt"] or {}).get("failures", 0) >= 2, 15)
            assert not s["online"] and "CP001" not in cs.connected_ids
            assert s["mqtt"]["last_error"].startswith("ValueError")
    run(scenario())


def test_a_downgrade_or_an_upgrade_without_a_root_is_rejected(ws_world):
    pki, make_sim, make_csms = ws_world

    async def scenario():
        async with make_csms(keys={"CP001": KEY}) as cs:
            sim = make_sim(url_of(cs), security_profile=1, auth_key=KEY)
            await online(sim, cs)
            for value in ("0", "1", "2"):  # not above; 2 needs a Central System root
                ans = await cs.change_configuration("CP001", "SecurityProfile", value)
                assert ans["status"] == "Rejected", value
    run(scenario())


async def upgrade_to_2(sim, cs, pki, fallback_s):
    """Profile 1, a Central System root installed over OCPP, then SecurityProfile 2."""
    cp = await online(sim, cs)
    with open(pki.ca) as f:
        assert (await cs.install_certificate("CP001", f.read()))["status"] == "Accepted"
    await cs.change_configuration("CP001", "SecurityProfileFallbackSeconds", str(fallback_s))
    connects = (await sim.ask(cmd="status"))["mqtt"]["connects"]
    assert (await cs.change_configuration("CP001", "SecurityProfile", "2"))["status"] == \
        "Accepted"
    return cp, connects


def test_an_upgrade_the_server_is_not_ready_for_falls_back_and_says_so(ws_world):
    pki, make_sim, make_csms = ws_world

    async def scenario():
        async with make_csms(keys={"CP001": KEY}) as cs:
            sim = make_sim(url_of(cs), security_profile=1, auth_key=KEY)
            cp, connects = await upgrade_to_2(sim, cs, pki, 4)
            # wss:// to a server that speaks ws:// only: no connection; after 4 s, profile 1
            await cs.wait_for(lambda: "SecurityProfileFallback" in cp.security_events, 30)
            conf = await cs.get_configuration("CP001", ["SecurityProfile"])
            assert conf["configurationKey"][0]["value"] == "1"
            assert len(cp.boots) == 1
    run(scenario())


def test_an_upgrade_the_server_is_ready_for_is_kept(ws_world):
    pki, make_sim, make_csms = ws_world

    async def scenario():
        plain = make_csms(keys={"CP001": KEY})
        async with plain:
            sim = make_sim(url_of(plain), security_profile=1, auth_key=KEY)
            cp, connects = await upgrade_to_2(sim, plain, pki, 60)
            port = plain.port
        secure = make_csms(secure=True, keys={"CP001": KEY}, port=port)  # now on wss://
        secure.chargers = plain.chargers
        async with secure:
            await sim.until(lambda s: s["online"] and s["mqtt"]["connects"] > connects, 30)
            conf = await secure.get_configuration("CP001", ["SecurityProfile"])
            assert conf["configurationKey"][0]["value"] == "2"
            assert cp.sessions[-1].basic_user == "CP001"
            assert "SecurityProfileFallback" not in cp.security_events
        await sim.ask(cmd="status")
    run(scenario())


def test_a_new_authorization_key_mid_session_reconnects_and_loses_nothing(ws_world):
    pki, make_sim, make_csms = ws_world
    new = "FFEEDDCCBBAA99887766554433221100"

    async def scenario():
        async with make_csms(keys={"CP001": KEY}) as cs:
            sim = make_sim(url_of(cs), security_profile=1, auth_key=KEY)
            cp = await online(sim, cs)
            await cs.change_configuration("CP001", "MeterValueSampleInterval", "1")
            await sim.ask(cmd="load", connector=1, amps=16.0)
            await sim.ask(cmd="rfid", uid=TAG)
            await sim.ask(cmd="ev", connector=1, state="C")
            await cs.wait_for(lambda: cp.transactions, T)
            connects = (await sim.ask(cmd="status"))["mqtt"]["connects"]
            cs.set_key("CP001", new)  # the Central System knows the new key first
            assert (await cs.change_configuration("CP001", "AuthorizationKey", new))[
                "status"] == "Accepted"
            await sim.until(lambda s: s["mqtt"]["connects"] > connects and s["online"])
            tx = list(cp.transactions.values())[0]
            n = len(tx.meter_values)
            await cs.wait_for(lambda: len(tx.meter_values) >= n + 2, T)
            assert len(cp.boots) == 1  # a reconnect is not a boot (OCPP-J 5.4)
            await sim.ask(cmd="rfid", uid=TAG)
            await cs.wait_for(lambda: tx.stopped, T)
            # security events have their own queue, one at a time: the Stop may come first
            await cs.wait_for(
                lambda: "ReconfigurationOfSecurityParameters" in cp.security_events, T)
    run(scenario())


def test_the_central_system_restarted_mid_session_loses_nothing(ws_world):
    pki, make_sim, make_csms = ws_world

    async def scenario():
        cs = make_csms()
        async with cs:
            sim = make_sim(url_of(cs))
            cp = await online(sim, cs)
            await cs.change_configuration("CP001", "MeterValueSampleInterval", "1")
            await sim.ask(cmd="load", connector=1, amps=16.0)
            await sim.ask(cmd="rfid", uid=TAG)
            await sim.ask(cmd="ev", connector=1, state="C")
            await cs.wait_for(lambda: cp.transactions, T)
            port = cs.port
        await asyncio.sleep(2)  # down: the charger queues its MeterValues
        await sim.ask(cmd="rfid", uid=TAG)  # the session ends while it is away
        cs2 = make_csms(port=port)
        cs2.chargers = cs.chargers  # the same records, as a Central System keeps them
        async with cs2:
            tx = list(cp.transactions.values())[0]
            await cs2.wait_for(lambda: tx.stopped, 30)
            starts = {f.message()[1] for f in cp.frames if '"StartTransaction"' in f.text
                      and f.direction == "in"}
            # one transaction: a StartTransaction whose answer the restart swallowed comes
            # again with its own message id (at least once), never as a second one
            assert len(starts) == 1 and len(cp.transactions) == 1
            assert len(cp.boots) == 1
    run(scenario())


def test_a_200_kb_message_is_closed_with_1009_and_the_charger_carries_on(ws_world):
    pki, make_sim, make_csms = ws_world

    async def scenario():
        async with make_csms() as cs:
            sim = make_sim(url_of(cs))
            cp = await online(sim, cs)
            await cs.send_raw("CP001", ['[2,"big","DataTransfer",{"vendorId":"x","data":"%s"}]'
                                        % ("y" * 200000)])
            s = await sim.until(lambda s: s["mqtt"]["oversize"] == 1 and s["online"]
                                and s["mqtt"]["connects"] == 2)
            assert cp.sessions[0].close_code == 1009
            conf = await cs.get_configuration("CP001", ["HeartbeatInterval"])
            assert conf["configurationKey"][0]["key"] == "HeartbeatInterval"
            assert s["boots"] == 1
    run(scenario())


def test_a_link_gone_quiet_is_dropped_by_the_pong_timeout_and_unplug_still_opens_the_relay(
        ws_world):
    from tools.blackhole import Blackhole

    pki, make_sim, make_csms = ws_world

    async def scenario():
        async with make_csms() as cs:
            proxy = await Blackhole(cs.port).start()
            try:
                sim = make_sim("ws://localhost:%d/ocpp" % proxy.port)
                cp = await online(sim, cs)
                assert (await cs.change_configuration("CP001", "WebSocketPingInterval", "2"))[
                    "status"] == "Accepted"
                await sim.ask(cmd="load", connector=1, amps=16.0)
                await sim.ask(cmd="rfid", uid=TAG)
                await sim.ask(cmd="ev", connector=1, state="C")
                await cs.wait_for(lambda: cp.transactions, T)
                await sim.until(lambda s: s["connectors"]["1"]["relay"])
                proxy.silence()
                t0 = asyncio.get_running_loop().time()
                s = await sim.ask(cmd="ev", connector=1, state="A")
                assert not s["connectors"]["1"]["contact"]  # at once, link or no link
                s = await sim.until(lambda s: not s["online"], 20)
                took = asyncio.get_running_loop().time() - t0
                # a ping every 2 s, its pong due within 10 s: down within 12 s (and a second)
                assert took < 13.5, took
                assert s["mqtt"]["last_error"] == "OSError: timed out"
                print("a quiet link dropped after %.1f s" % took)
            finally:
                proxy.close()
    run(scenario())


class BareCentralSystem:
    """A Central System with none of our code: mobilityhouse `ocpp`'s ChargePoint on a
    `websockets` server, Basic auth checked by hand, the ocpp1.6 subprotocol required."""

    def __init__(self, ssl=None, password=None):
        import datetime

        from ocpp.routing import on
        from ocpp.v16 import ChargePoint, call_result
        from ocpp.v16.enums import Action, AuthorizationStatus, RegistrationStatus

        self.ssl, self.password = ssl, password
        self.points = {}
        self.boots = 0
        self.stops = []
        self.peers = []  # the subjects of verified client certificates (profile 3)

        def now():
            return datetime.datetime.now(datetime.timezone.utc).isoformat()
        outer = self

        class Point(ChargePoint):
            @on(Action.boot_notification)
            def on_boot(self, **_):
                outer.boots += 1
                return call_result.BootNotification(current_time=now(), interval=300,
                                                    status=RegistrationStatus.accepted)

            @on(Action.status_notification)
            def on_status(self, **_):
                return call_result.StatusNotification()

            @on(Action.heartbeat)
            def on_heartbeat(self):
                return call_result.Heartbeat(current_time=now())

            @on(Action.security_event_notification)
            def on_security_event(self, **_):
                return call_result.SecurityEventNotification()

            @on(Action.authorize)
            def on_authorize(self, id_tag):
                return call_result.Authorize(
                    id_tag_info={"status": AuthorizationStatus.accepted})

            @on(Action.start_transaction)
            def on_start(self, **_):
                return call_result.StartTransaction(
                    transaction_id=7, id_tag_info={"status": AuthorizationStatus.accepted})

            @on(Action.meter_values)
            def on_meter_values(self, **_):
                return call_result.MeterValues()

            @on(Action.stop_transaction)
            def on_stop(self, **kw):
                outer.stops.append(kw["reason"] if "reason" in kw else None)
                return call_result.StopTransaction()
        self.Point = Point

    async def __aenter__(self):
        from websockets.asyncio.server import serve
        from websockets.datastructures import Headers
        from websockets.http11 import Response
        import base64

        def check(connection, request):
            if self.password is None:
                return None
            expected = "Basic " + base64.b64encode(b"CP001:" + self.password).decode()
            if request.headers.get("Authorization") != expected:
                return Response(401, "Unauthorized", Headers(), b"")
            return None

        async def handler(ws):
            cp_id = ws.request.path.rsplit("/", 1)[-1]
            peer = ws.transport.get_extra_info("peercert")
            if peer:
                self.peers.append(peer["subject"])
            point = self.Point(cp_id, ws)
            self.points[cp_id] = point
            try:
                await point.start()
            except Exception:  # the charger went: its connection closed
                pass

        self.server = await serve(handler, "127.0.0.1", 0, subprotocols=["ocpp1.6"],
                                  process_request=check, ssl=self.ssl)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self.server.close()
        await self.server.wait_closed()


@pytest.mark.parametrize("profile", [0, 1, 2, 3])
def test_a_central_system_with_none_of_our_code(ws_world, profile):
    from ocpp.v16 import call

    pki, make_sim, make_csms = ws_world
    secure = profile >= 2

    async def scenario():
        tls = None
        if secure:
            from tools.csms_websocket import server_tls_context
            tls = server_tls_context(*pki.server(), client_ca=pki.ca if profile == 3 else None)
        password = bytes.fromhex(KEY) if profile in (1, 2) else None
        async with BareCentralSystem(tls, password) as cs:
            sim = make_sim(url_of(cs, secure), **profile_flags(pki, profile))
            await sim.start()
            await sim.until(lambda s: s["online"])
            point = cs.points["CP001"]
            conf = await point.call(call.GetConfiguration(key=["SecurityProfile"]))
            assert conf.configuration_key[0]["value"] == str(profile)
            await sim.ask(cmd="load", connector=1, amps=16.0)
            # an RFID session: Authorize, StartTransaction, the EV unplugged
            await sim.ask(cmd="ev", connector=1, state="C")
            await sim.ask(cmd="rfid", uid=TAG)
            await sim.until(lambda s: s["connectors"]["1"]["transaction_id"] == 7)
            await sim.until(lambda s: s["connectors"]["1"]["contact"])
            await sim.ask(cmd="ev", connector=1, state="A")
            await sim.until(lambda s: s["connectors"]["1"]["transaction_id"] is None)
            # RemoteStart / RemoteStop
            ans = await point.call(call.RemoteStartTransaction(id_tag=TAG, connector_id=1))
            assert ans.status == "Accepted"
            await sim.ask(cmd="ev", connector=1, state="C")
            await sim.until(lambda s: s["connectors"]["1"]["transaction_id"] == 7)
            ans = await point.call(call.RemoteStopTransaction(transaction_id=7))
            assert ans.status == "Accepted"
            await sim.until(lambda s: s["connectors"]["1"]["transaction_id"] is None)
            ans = await point.call(call.Reset(type="Hard"))
            assert ans.status == "Accepted"
            await sim.until(lambda s: s["boots"] == 2 and s["online"])
            for _ in range(100):
                if len(cs.stops) == 2:
                    break
                await asyncio.sleep(0.1)
            assert cs.stops == ["EVDisconnected", "Remote"] and cs.boots == 2
            if profile == 3:
                assert "CP001" in str(cs.peers)
    run(scenario())


def test_profile_3_presents_the_certificate_the_charger_had_signed(ws_world):
    """SignCertificate over the WebSocket; from the next connection the charger presents its
    own key's certificate instead of config.json's (issue 21)."""
    pki, make_sim, make_csms = ws_world

    async def scenario():
        async with make_csms(secure=True, client_ca=True,
                             signer=certs.signer_for(pki.dir)) as cs:
            sim = make_sim(url_of(cs, True), **profile_flags(pki, 3))
            cp = await online(sim, cs)
            first = cp.sessions[-1].certificate_serial
            assert first is not None
            assert (await cs.extended_trigger_message("CP001", "SignChargePointCertificate")) \
                == {"status": "Accepted"}
            await cs.wait_for(lambda: cp.certificates_signed, T)
            assert cp.certificates_signed == ["Accepted"]
            path = os.path.join(sim.state, "fs", "data", "identity")
            await sim.until(lambda s: os.path.exists(path))
            with open(path, "rb") as f:
                raw = f.read()
            record = json.loads(raw[raw.index(b"{"):raw.rindex(b"}") + 1])
            sessions = len(cp.sessions)
            assert (await cs.reset("CP001", "Hard")) == {"status": "Accepted"}
            await cs.wait_for(lambda: len(cp.sessions) > sessions and cp.sessions[-1].open, T)
            await sim.until(lambda s: s["online"])
            now = cp.sessions[-1]
            assert now.certificate_cn == "CP001"
            assert now.certificate_serial == record["serial"] != first
    run(scenario())
