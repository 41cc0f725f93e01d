"""Hostile input, fuzzed (issue: nothing lost, nothing stuck): generated frames into a whole
charge point (engine, routing, the features' handlers), generated payloads into the MQTT
transport, and generated content in config.json and in every record the firmware keeps.

Invariants: nothing raises out of the engine, the transport or the boot; every well-framed
CALL (a JSON array [2, "<id>", ...]) gets exactly one answer per delivery, a CALLRESULT or a
CALLERROR with a code of the OCPP-J 1.6 table, and an id longer than 36 characters a
FormationViolation; our own message ids are never used twice; a frame that is not a CALL is
never answered. At least 10 000 frames per run (FUZZ_EXAMPLES=N for a longer one: N batches
of 50 frames, default 200)."""
import json
import os
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chargepoint.ocpp import schema
from chargepoint.ocpp.framing import HEAD, MAX_FRAME, peek
from conftest import AUTHORIZED, Rig

BATCHES = int(os.environ.get("FUZZ_EXAMPLES", "200"))
FRAMES = 50  # per batch: 200 x 50 = 10 000 frames a run
CODES = {"NotImplemented", "NotSupported", "InternalError", "ProtocolError", "SecurityError",
         "FormationViolation", "PropertyConstraintViolation", "OccurenceConstraintViolation",
         "TypeConstraintViolation", "GenericError"}
FUZZ = settings(max_examples=BATCHES, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))

# -- values -------------------------------------------------------------------------------

hostile_text = st.one_of(
    st.text(max_size=30), st.text(string.printable, min_size=40, max_size=600),
    st.sampled_from(["", " ", "\x00", "\ud7ff", "é" * 30, "Accepted", "2026-12-07T04:00:00Z",
                     "9999-99-99T99:99:99Z", "-1", "1e999", "NaN", "true", "%s%n", "../.."]))
hostile_number = st.one_of(
    st.integers(min_value=-2**70, max_value=2**70), st.floats(allow_nan=False),
    st.sampled_from([0, -1, 2**31, 2**63, 10**40, 1e308, -0.0, 0.5]))
scalars = st.one_of(st.none(), st.booleans(), hostile_number, hostile_text)
json_values = st.recursive(
    scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                     st.dictionaries(hostile_text, inner, max_size=4)),
    max_leaves=12)


def _rules(table, name):
    found = schema.find(table, name)
    return [f.split(" ") for f in found.split(";")] if found else []


def _valid(kind, arg, depth=0):
    """A value that meets one field's rule (schema.py's kinds)."""
    if kind == "i":
        low = int(arg) if arg not in ("-", "") else -1000
        return st.integers(min_value=low, max_value=low + 100000)
    if kind == "n":
        return st.one_of(st.integers(0, 100), st.floats(0, 1000, allow_nan=False))
    if kind == "s":
        n = int(arg) or 60
        return st.text(string.ascii_letters + string.digits, min_size=1, max_size=n)
    if kind == "e":
        return st.sampled_from(arg.split("|"))
    if kind == "t":
        return st.sampled_from(["2026-12-07T04:00:00Z", "2030-01-01T00:00:00.000Z",
                                "2020-02-29T23:59:59+02:00"])
    if kind == "o":
        return _payload(schema.TYPES, arg, depth + 1)
    if kind == "a":
        return st.lists(_valid(arg[0], arg[1:], depth + 1), max_size=3)
    return json_values


def _payload(table, name, depth=0):
    fields = _rules(table, name)
    if depth > 3 or not fields:
        return st.just({})
    required = {f[0]: _valid(f[1], f[3] if len(f) > 3 else "", depth)
                for f in fields if f[2] == "1"}
    optional = {f[0]: _valid(f[1], f[3] if len(f) > 3 else "", depth)
                for f in fields if f[2] != "1"}
    return st.fixed_dictionaries(required, optional=optional)


@st.composite
def payloads(draw, action):
    """A valid payload for `action`, then as often as not broken: a field missing, one of
    the wrong type, one unknown, a value out of range or huge."""
    p = draw(_payload(schema.REQUESTS, action)) if schema.find(schema.REQUESTS, action) else {}
    how = draw(st.integers(0, 7))
    if how == 1 and p:
        p.pop(draw(st.sampled_from(sorted(p))))
    elif how == 2 and p:
        p[draw(st.sampled_from(sorted(p)))] = draw(json_values)
    elif how == 3:
        p[draw(hostile_text)] = draw(json_values)
    elif how == 4:
        return draw(json_values)  # not even an object
    elif how == 5 and p:
        p[draw(st.sampled_from(sorted(p)))] = "x" * draw(st.integers(100, MAX_FRAME + 100))
    return p


ACTIONS = st.one_of(st.sampled_from(schema.KNOWN_ACTIONS), hostile_text)
uids = st.one_of(st.sampled_from(["a", "b", "dup", "1.1"]),  # a pool: duplicates happen
                 st.text(string.ascii_letters + string.digits + "-", min_size=1, max_size=36),
                 st.text(min_size=37, max_size=60))


@st.composite
def frames(draw):
    kind = draw(st.integers(0, 9))
    if kind <= 4:  # a CALL, mostly well formed
        action = draw(ACTIONS)
        return json.dumps([2, draw(uids), action, draw(payloads(action))])
    if kind == 5:  # a CALL of the wrong arity or types
        return json.dumps([2] + draw(st.lists(json_values, max_size=5)))
    if kind == 6:  # an answer to nothing
        return json.dumps([draw(st.sampled_from([3, 4])), draw(uids), draw(json_values)])
    if kind == 7:  # deep nesting
        n = draw(st.integers(10, 3000))
        return "[2, \"deep\", \"DataTransfer\", " + "[" * n + "]" * n + "]"
    if kind == 8:  # not JSON, not UTF-8 once decoded, empty
        raw = draw(st.binary(max_size=80))
        return raw.decode("utf-8", "replace") if draw(st.booleans()) else ""
    return json.dumps(draw(json_values))  # any JSON at all


# The same kinds of frames from a plain random.Random, at a fraction of the cost of drawing
# each from Hypothesis (a batch is a few frames drawn by Hypothesis and the rest from a
# Random it draws: 10 000 frames a run in seconds).
_TEXTS = ["", " ", "\x00", "\ud7ff", "é" * 30, "Accepted", "2026-12-07T04:00:00Z",
          "9999-99-99T99:99:99Z", "-1", "1e999", "NaN", "true", "%s%n", "../..", "a" * 50]
_NUMBERS = [0, -1, 2 ** 31, 2 ** 63, 10 ** 40, 1e308, -0.0, 0.5, 2 ** 70, -2 ** 70, 3]


def _r_text(rnd):
    if rnd.random() < 0.5:
        return rnd.choice(_TEXTS)
    return "".join(rnd.choice(string.printable + "éü\u20ac\U0001f600")
                   for _ in range(rnd.randrange(0, 40)))


def _r_value(rnd, depth=0):
    k = rnd.randrange(7 if depth < 3 else 4)
    if k == 0:
        return rnd.choice([None, True, False])
    if k == 1:
        return rnd.choice(_NUMBERS) if rnd.random() < 0.5 else rnd.randint(-10 ** 6, 10 ** 6)
    if k in (2, 3):
        return _r_text(rnd)
    if k == 4:
        return [_r_value(rnd, depth + 1) for _ in range(rnd.randrange(4))]
    return {_r_text(rnd): _r_value(rnd, depth + 1) for _ in range(rnd.randrange(4))}


def _r_valid(rnd, kind, arg, depth):
    if kind == "i":
        low = int(arg) if arg not in ("-", "") else -1000
        return rnd.randint(low, low + 100000)
    if kind == "n":
        return rnd.choice([0, 6, 16.5, 32, 1000.0])
    if kind == "s":
        return "".join(rnd.choice(string.ascii_letters) for _ in range(rnd.randint(1, int(arg)
                                                                                or 60)))
    if kind == "e":
        return rnd.choice(arg.split("|"))
    if kind == "t":
        return rnd.choice(["2026-12-07T04:00:00Z", "2030-01-01T00:00:00.000Z"])
    if kind == "o":
        return _r_payload(rnd, schema.TYPES, arg, depth + 1)
    if kind == "a":
        return [_r_valid(rnd, arg[0], arg[1:], depth + 1) for _ in range(rnd.randrange(3))]
    return _r_value(rnd)


def _r_payload(rnd, table, name, depth=0):
    p = {}
    if depth > 3:
        return p
    for f in _rules(table, name):
        if f[2] == "1" or rnd.random() < 0.5:
            p[f[0]] = _r_valid(rnd, f[1], f[3] if len(f) > 3 else "", depth)
    how = rnd.randrange(8) if depth == 0 else 0
    if how == 1 and p:
        p.pop(rnd.choice(sorted(p)))
    elif how == 2 and p:
        p[rnd.choice(sorted(p))] = _r_value(rnd)
    elif how == 3:
        p[_r_text(rnd)] = _r_value(rnd)
    elif how == 4:
        return _r_value(rnd)
    elif how == 5 and p:
        p[rnd.choice(sorted(p))] = "x" * rnd.randint(100, MAX_FRAME + 100)
    return p


_POOL = ["a", "b", "dup", "1.1", "1.2"]


def fast_frame(rnd):
    kind = rnd.randrange(10)
    uid = (rnd.choice(_POOL) if rnd.random() < 0.3 else
           "".join(rnd.choice(string.ascii_letters) for _ in range(rnd.choice([1, 8, 36, 37]))))
    if kind <= 4:
        action = (rnd.choice(schema.KNOWN_ACTIONS) if rnd.random() < 0.9 else _r_text(rnd))
        payload = (_r_payload(rnd, schema.REQUESTS, action)
                   if schema.find(schema.REQUESTS, action) else _r_value(rnd))
        return json.dumps([2, uid, action, payload])
    if kind == 5:
        return json.dumps([2] + [_r_value(rnd) for _ in range(rnd.randrange(6))])
    if kind == 6:
        return json.dumps([rnd.choice([3, 4]), uid, _r_value(rnd)])
    if kind == 7:
        n = rnd.randint(10, 3000)
        return "[2, \"deep\", \"DataTransfer\", " + "[" * n + "]" * n + "]"
    if kind == 8:
        raw = bytes(rnd.randrange(256) for _ in range(rnd.randrange(80)))
        return raw.decode("utf-8", "replace") if rnd.random() < 0.5 else ""
    return json.dumps(_r_value(rnd))


def well_framed_call(text):
    """The id of a CALL the charge point must answer, or None: a JSON array [2, "<id>", ...];
    past MAX_FRAME, one whose head reads as a CALL with an action (the engine's rule: it is
    answered FormationViolation without being parsed)."""
    head = peek(text[:HEAD])
    if len(text.encode()) > MAX_FRAME:
        return head[1] if head[0] == 2 and head[2] is not None else None
    try:
        msg = json.loads(text)
    except RecursionError:  # nested past any parser: refused by its head (the engine's rule)
        return head[1] if head[0] == 2 and head[2] is not None else None
    except ValueError:
        return None
    if isinstance(msg, list) and len(msg) >= 2 and msg[0] == 2 and isinstance(msg[1], str):
        return msg[1]
    return None


# -- the engine and the charge point ------------------------------------------------------

@pytest.fixture(scope="module")
def rig():
    r = Rig(connectors=2)
    r.step()
    assert r.cp.registration == "Accepted"
    return r


@FUZZ
@given(drawn=st.lists(frames(), min_size=1, max_size=3), rnd=st.randoms(use_true_random=False))
def test_every_well_framed_call_gets_exactly_one_answer_and_nothing_raises(rig, drawn, rnd):
    batch = drawn + [fast_frame(rnd) for _ in range(FRAMES - len(drawn))]
    COUNT[0] += len(batch)
    sent = rig.transport.sent
    for text in batch:
        n = len(sent)
        rig.cp.engine.feed(text)  # never raises
        rig.cp.loop()
        out = [json.loads(t) for t in sent[n:]]
        uid = well_framed_call(text)
        answers = [m for m in out if m[0] in (3, 4) and m[1] == uid]
        if uid is None:
            assert not [m for m in out if m[0] in (3, 4)], (text[:200], out)
            continue
        assert len(answers) == 1, (text[:200], out)
        answer = answers[0]
        if answer[0] == 4:
            assert answer[2] in CODES and isinstance(answer[3], str), answer
        if len(uid) > 36:
            assert answer[0] == 4 and answer[2] in ("FormationViolation", "ProtocolError")
    def ours(text):
        m = json.loads(text)
        if m[0] == 2:
            assert m[1] not in OURS, "a message id of ours used twice: %s" % text
            OURS.add(m[1])
    rig.cs.handle(on_frame=ours)  # the Central System answers what the charge point sent
    queued = [r["u"] for _, r in rig.cp.txq.records()]
    assert len(queued) == len(set(queued))


OURS = set()  # the ids of the CALLs the fuzzed charge point sent
COUNT = [0]  # frames fed


def test_at_least_ten_thousand_frames_went_in():
    assert COUNT[0] >= min(10000, BATCHES * FRAMES) - FRAMES, COUNT


def test_the_fuzzed_charge_point_still_charges(rig):
    """After all that, undone what the fuzzed CALLs set up on purpose (sessions, availability,
    reservations, charging limits, the local list), a card and a plug close the relay; unplug
    opens it. (Power cut first: the sessions the fuzzed CALLs started end with it.)"""
    for c in (1, 2):
        rig.ev("A", cid=c)
    rig.power_cut()
    rig.step()
    for c in (0, 1, 2):
        rig.send("ChangeAvailability", {"connectorId": c, "type": "Operative"})
    rig.send("ClearChargingProfile", {})
    for item in list(rig.cp.reservations.items):
        rig.send("CancelReservation", {"reservationId": item[0]})
    rig.send("SendLocalList", {"listVersion": 1, "updateType": "Full"})
    rig.tap(AUTHORIZED[0])
    rig.ev("C")
    c = rig.conn()
    assert rig.hw().relay.closed, (c.status, c.fault, c.operative, c.auth, c.tx)
    rig.ev("A")
    assert not rig.hw().relay.closed


# -- the MQTT transport -------------------------------------------------------------------

@FUZZ
@given(payloads=st.lists(st.one_of(st.binary(max_size=300), frames().map(str.encode)),
                         min_size=1, max_size=FRAMES),
       topics=st.lists(st.sampled_from([b"CP001/out", b"CP002/out", b"", b"CP001/out/x"]),
                       min_size=1, max_size=FRAMES))
def test_the_transport_hands_over_every_utf8_frame_on_its_topic_once(payloads, topics):
    from chargepoint.transport.mqtt import MqttTransport
    from chargepoint.transport.tls import TlsLink
    from tools.fakes import FakeNet, FakeTicks

    ticks = FakeTicks()
    net = FakeNet(ticks)
    t = MqttTransport("CP001", "broker.example", ssl=TlsLink(None), ticks_ms=ticks,
                      client_factory=net.factory, rand=lambda n: 0, inbox_len=10 ** 4,
                      inbox_bytes=10 ** 7)
    t.step()
    expected = []
    for i, payload in enumerate(payloads):
        topic = topics[i % len(topics)]
        net.pending.append((topic, payload))
        if topic == b"CP001/out":
            try:
                expected.append(payload.decode())
            except UnicodeError:
                pass
    for _ in range(len(payloads) * 3 + 5):
        ticks.advance(5)
        t.step()
    got = []
    while True:
        msg = t.receive()
        if msg is None:
            break
        if not isinstance(msg[0], str):  # the inbox hands a frame over as bytes
            msg = (msg[0].decode(),) + msg[1:]
        got.append(msg)
    # each, once, in order: whole, or (past MAX_FRAME, when the link kept only that) its head
    # and size, which the engine answers with a FormationViolation
    assert len(got) == len(expected), (got, expected)
    for msg, text in zip(got, expected):
        assert text.startswith(msg[0]) and (len(msg) == 2 and msg[0] == text
                                            or msg[2] == len(text.encode())), (msg, text)
    assert t.connected and t.status["received"] >= len(got)


# -- config.json and the records at boot --------------------------------------------------

@FUZZ
@given(content=st.one_of(st.binary(max_size=400), json_values.map(lambda v: json.dumps(v).encode()),
                         st.builds(lambda d: json.dumps(d).encode(),
                                   st.fixed_dictionaries({"id": hostile_text}, optional={
                                       "mqtt": json_values, "hardware": json_values,
                                       "wifi": json_values, "transport": json_values}))))
def test_any_config_json_is_taken_or_refused_with_one_line(tmp_path_factory, content):
    from chargepoint import devconfig

    path = tmp_path_factory.mktemp("cfg") / "config.json"
    path.write_bytes(content)
    try:
        cfg = devconfig.load(str(path))
    except devconfig.ConfigError as e:
        assert str(e) and "\n" not in str(e)
    else:
        assert isinstance(cfg, dict) and cfg["id"]


RECORDS = ("boot", "config", "txids", "tx1", "txb1", "authcache", "chargingprofiles",
           "reservations", "availability", "fwjob", "q.00000001", "sev.1", "certs")


@settings(max_examples=max(20, BATCHES // 4), deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(contents=st.lists(st.one_of(st.binary(max_size=200),
                                   json_values.map(lambda v: json.dumps(v).encode())),
                         min_size=len(RECORDS), max_size=len(RECORDS)))
def test_any_record_content_boots_a_charge_point_that_goes_on(tmp_path_factory, contents):
    from chargepoint.model.chargepoint import ChargePoint
    from chargepoint.platform.clock import Clock
    from chargepoint.platform.store import FileStore
    from tools.fakes import FakeBoard, FakeTicks, LoopbackTransport, ScriptedCentralSystem

    folder = tmp_path_factory.mktemp("data")
    for name, data in zip(RECORDS, contents):
        (folder / name).write_bytes(data)
    ticks = FakeTicks()
    transport = LoopbackTransport()
    cs = ScriptedCentralSystem(transport, lambda: "2026-12-07T04:00:00Z")
    cp = ChargePoint(FakeBoard(1), transport, FileStore(str(folder)), Clock(ticks_ms=ticks),
                     services={"folder": str(folder)})
    for _ in range(200):
        ticks.advance(50)
        cp.loop()
        cs.handle()
    assert cp.registration == "Accepted"
