"""MqttTransport policy on CPython: backoff, keepalive, outbox, stale window, reconnects.

A scripted fake broker (fakes.FakeNet) stands in for umqtt.simple (same API) and a fake
clock for ticks_ms; the network thread is never started, each test turns `step()` by hand.
"""

import pytest

from chargepoint.transport.mqtt import MAX_PAYLOAD, MqttTransport, make_topic
from chargepoint.transport.policy import KeepAlive, Reconnect, StaleWindow
from chargepoint.transport.tls import TlsLink, pem_blocks
from tools.fakes import FakeNet, FakeTicks


def received(t):
    """t.receive() with the frame as text (the inbox hands bytes over)."""
    item = t.receive()
    if item is None or isinstance(item[0], str):
        return item
    return (item[0].decode(),) + tuple(item[1:])


def lowest(n):
    return 0


def highest(n):
    return n - 1


def make(ticks=None, **kw):
    ticks = ticks or FakeTicks()
    net = FakeNet(ticks)
    kw.setdefault("rand", lowest)
    t = MqttTransport("CP001", "broker.example", ssl=TlsLink(None), ticks_ms=ticks,
                      client_factory=net.factory, **kw)
    return t, net, ticks


def online(**kw):
    t, net, ticks = make(**kw)
    t.step()
    assert t.connected
    return t, net, ticks


def run(t, ticks, ms, every=50):
    for _ in range(ms // every):
        ticks.advance(every)
        t.step()


# -- backoff -----------------------------------------------------------------------------

def test_backoff_grows_exponentially_with_jitter_bounds():
    ticks = FakeTicks()
    low = Reconnect(ticks, rand=lowest)
    high = Reconnect(ticks, rand=highest)
    lows = [low.failed(ticks()) for _ in range(9)]
    highs = [high.failed(ticks()) for _ in range(9)]
    assert lows == [1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000]
    assert highs == [2000, 4000, 8000, 16000, 32000, 64000, 120000, 120000, 120000]


def test_backoff_jitter_is_drawn_within_the_window():
    seen = []
    r = Reconnect(FakeTicks(), rand=lambda n: seen.append(n) or n // 3)
    assert r.failed(0) == 1000 + 1001 // 3
    assert seen == [1001]


def test_backoff_resets_after_a_stable_connection():
    ticks = FakeTicks()
    r = Reconnect(ticks, rand=lowest, stable_ms=30000)
    for _ in range(4):
        r.failed(ticks())
    r.connected(ticks())
    ticks.advance(30000)
    assert r.failed(ticks()) == 1000


def test_backoff_keeps_growing_when_the_connection_drops_at_once():
    # e.g. two boards with one client id taking the session from each other
    ticks = FakeTicks()
    r = Reconnect(ticks, rand=lowest, stable_ms=30000)
    for _ in range(3):
        r.failed(ticks())
    r.connected(ticks())
    ticks.advance(500)
    assert r.failed(ticks()) == 8000


def test_first_retry_waits_at_least_one_second():
    with pytest.raises(ValueError):
        Reconnect(FakeTicks(), first_ms=500)
    t, net, ticks = make()
    net.refuse = 1
    t.step()
    assert not t.connected and t.status["failures"] == 1
    ticks.advance(999)
    t.step()
    assert len(net.connects) == 1
    ticks.advance(1)
    t.step()
    assert len(net.connects) == 2 and t.connected


def test_no_two_connects_within_one_second():
    t, net, ticks = make(rand=highest)
    net.refuse = 6
    run(t, ticks, 300000, every=20)
    assert t.connected
    gaps = [b - a for a, b in zip(net.connects, net.connects[1:])]
    assert len(net.connects) == 7
    assert min(gaps) >= 1000
    # and connections that die at once do not make it spin either
    t2, net2, ticks2 = online(stable_ms=30000)
    for _ in range(5):
        net2.fail_publish = 1
        t2.send("[2,\"x\",\"Heartbeat\",{}]")
        run(t2, ticks2, 20000, every=10)
    gaps = [b - a for a, b in zip(net2.connects, net2.connects[1:])]
    assert len(gaps) == 5 and min(gaps) >= 1000


def test_refused_connect_reports_status_and_keeps_running():
    t, net, ticks = make()
    net.refuse = 1
    t.step()
    assert t.status["state"] == "backoff"
    assert t.status["last_error"] == "OSError: [Errno 111] refused"
    assert t.send("x") is False


# -- keepalive ---------------------------------------------------------------------------

def test_keepalive_schedule():
    ka = KeepAlive(300)
    assert ka.interval_ms == 150000 and ka.pong_ms == 30000
    assert ka.interval_ms + ka.pong_ms < 1.5 * 300000
    ka.start(0)
    assert not ka.ping_due(149999)
    ka.sent(100000)  # a PUBLISH counts as traffic
    assert not ka.ping_due(200000)
    assert ka.ping_due(250000)
    ka.pinged(250000)
    assert not ka.ping_due(400000)  # one PINGREQ outstanding at a time
    assert not ka.dead(279999)
    assert ka.dead(280000)
    ka.received(270000)
    assert not ka.dead(280000)
    with pytest.raises(ValueError):
        KeepAlive(1201)


def test_pings_on_time_and_stays_up_when_answered():
    t, net, ticks = online(keepalive=60)
    run(t, ticks, 29950)
    assert net.pings == 0
    run(t, ticks, 100)
    assert net.pings == 1
    run(t, ticks, 120000)
    assert net.pings == 5 and t.connected and len(net.connects) == 1


def test_unanswered_ping_drops_the_link_and_reconnects():
    t, net, ticks = online(keepalive=60)
    net.answer_pings = False
    run(t, ticks, 30000)
    assert net.pings == 1 and t.connected
    run(t, ticks, 15000)
    assert not t.connected
    assert t.status["last_error"] == "OSError: timed out"
    assert net.clients[0].closed
    net.answer_pings = True
    run(t, ticks, 2000)
    assert t.connected and len(net.connects) == 2


# -- outbox ------------------------------------------------------------------------------

def test_send_is_refused_while_offline():
    t, net, ticks = make()
    assert t.send("[2,\"1\",\"Heartbeat\",{}]") is False


def test_an_answer_owed_when_the_link_drops_goes_out_after_the_reconnect():
    # The CALL was acknowledged (so the broker will not send it again) and the link went
    # while the engine worked on it: its answer is kept for the persistent session.
    t, net, ticks = online()
    net.fail_publish = 1
    assert t.send('[2, "a", "Heartbeat", {}]')
    t.step()
    assert not t.connected
    assert t.send('[3, "cs-1", {"status": "Accepted"}]') is True
    assert t.send('[4, "cs-2", "InternalError", "out of memory", {}]') is True
    assert t.send('[2, "b", "Heartbeat", {}]') is False  # ours waits in its queue
    ticks.advance(2000)
    t.step()
    assert t.connected
    while len(net.published) < 3:
        ticks.advance(t.step() or 1)
    assert [m for _, m, _ in net.published] == [
        b'[2, "a", "Heartbeat", {}]', b'[3, "cs-1", {"status": "Accepted"}]',
        b'[4, "cs-2", "InternalError", "out of memory", {}]']


def test_outbox_is_bounded_and_published_in_order_at_qos1():
    t, net, ticks = online(outbox_len=3)
    assert [t.send("f%d" % i) for i in range(4)] == [True, True, True, False]
    for _ in range(3):
        t.step()
        ticks.advance(20)
    assert net.published == [(b"CP001/in", b"f0", 1), (b"CP001/in", b"f1", 1),
                             (b"CP001/in", b"f2", 1)]
    assert t.send("f3") is True


def call(i):
    return '[2, "u%d", "Heartbeat", {}]' % i


def test_our_calls_go_in_a_burst_of_10_then_paced_to_50_a_second():
    t, net, ticks = online(outbox_len=200, outbox_bytes=100000)
    for i in range(150):
        assert t.send(call(i))
    waits = []
    while len(net.published) < 150:
        wait = t.step()
        waits.append(wait)
        ticks.advance(wait or 1)
    at = net.publish_ticks
    gaps = [b - a for a, b in zip(at, at[1:])]
    assert max(gaps[:9]) <= 1  # a boot's statuses, a backlog's head: back to back
    assert min(gaps[10:]) >= 19 and max(gaps[10:]) <= 21, gaps  # then 50 a second
    # never more than 60 in any second (AWS IoT allows 100 per connection)
    assert max(sum(1 for u in at if t0 <= u < t0 + 1000) for t0 in at) <= 60
    assert max(waits[:-1]) <= 20  # while frames wait, the thread sleeps until the next slot
    assert [m for _, m, _ in net.published] == [call(i).encode() for i in range(150)]


def test_answers_keep_to_the_pace():
    # a flood of inbound CALLs is answered no faster than 50 a second: the heap their
    # answers take while they wait stays bounded
    t, net, ticks = online(outbox_len=40, outbox_bytes=100000)
    for i in range(20):
        assert t.send('[3, "cs-%d", {}]' % i)
    while len(net.published) < 20:
        ticks.advance(t.step() or 1)
    gaps = [b - a for a, b in zip(net.publish_ticks, net.publish_ticks[1:])]
    assert min(gaps) >= 19 and max(gaps) <= 21, gaps


def test_the_burst_comes_back_after_a_pause():
    t, net, ticks = online(outbox_len=40, outbox_bytes=100000)
    for i in range(20):
        assert t.send(call(i))
    while len(net.published) < 20:
        ticks.advance(t.step() or 1)
    ticks.advance(200)  # ten slots of the schedule unused
    for i in range(10):
        assert t.send(call(100 + i))
    while len(net.published) < 30:
        ticks.advance(t.step() or 1)
    assert net.publish_ticks[-1] - net.publish_ticks[-10] <= 10, net.publish_ticks[-12:]


def test_oversized_frame_is_refused():
    t, net, ticks = online()
    with pytest.raises(ValueError):
        t.send("x" * (MAX_PAYLOAD + 1))
    assert t.send("x" * MAX_PAYLOAD) is True


def test_reconnects_after_oserror_mid_publish_and_republishes():
    t, net, ticks = online()
    net.fail_publish = 1
    assert t.send("[2,\"a\",\"Heartbeat\",{}]")
    t.step()
    assert not t.connected and t.status["failures"] == 1
    assert t.status["last_error"] == "OSError: [Errno 104] reset mid-publish"
    assert net.published == []
    ticks.advance(2000)
    t.step()
    assert t.connected and t.status["connects"] == 2
    t.step()
    assert net.published == [(b"CP001/in", b"[2,\"a\",\"Heartbeat\",{}]", 1)]


# -- sessions, inbound, stale window ----------------------------------------------------

def test_subscribes_only_when_the_broker_lost_the_session():
    t, net, ticks = online()
    assert net.subscriptions == [(b"CP001/out", 1)]
    net.fail_publish = 1
    net.session_present = True
    t.send("x")
    t.step()
    ticks.advance(2000)
    t.step()
    assert t.connected and net.subscriptions == [(b"CP001/out", 1)]


def test_stale_window_flags_backlog_of_a_resumed_session():
    t, net, ticks = make()
    net.session_present = True
    net.pending = [(b"CP001/out", b"[2,\"old\",\"RemoteStartTransaction\",{}]")]
    t.step()
    t.step()
    assert received(t) == ("[2,\"old\",\"RemoteStartTransaction\",{}]", True)
    ticks.advance(1999)
    net.pending.append((b"CP001/out", b"late-backlog"))
    t.step()
    assert received(t) == ("late-backlog", True)
    ticks.advance(1)
    net.pending.append((b"CP001/out", b"live"))
    t.step()
    assert received(t) == ("live", False)
    assert received(t) is None


def test_stale_window_closes_when_the_central_system_answers_a_call_of_this_connection():
    # OCTT TC_013/014: after a reset the Central System answers our BootNotification and at
    # once sends ChangeAvailability: that one is fresh, however soon after the CONNACK
    t, net, ticks = make()
    net.session_present = True
    net.pending = [(b"CP001/out", b'[2,"old","ChangeAvailability",{}]')]
    t.step()
    t.step()
    assert received(t) == ('[2,"old","ChangeAvailability",{}]', True)
    assert t.send('[2, "2.1", "BootNotification", {}]')
    net.ahead = 0
    t.step()  # published
    ticks.advance(10)
    net.pending += [(b"CP001/out", b'[2,"older","Reset",{}]'),  # behind the backlog still
                    (b"CP001/out", b'[3,"someone-else",{}]'),
                    (b"CP001/out", b'[3,"2.1",{"status":"Accepted"}]'),
                    (b"CP001/out", b'[2,"new","ChangeAvailability",{}]')]
    for _ in range(4):
        t.step()
    assert [received(t) for _ in range(4)] == [
        ('[2,"older","Reset",{}]', True), ('[3,"someone-else",{}]', True),
        ('[3,"2.1",{"status":"Accepted"}]', False), ('[2,"new","ChangeAvailability",{}]', False)]


def test_an_answer_to_a_call_sent_again_after_a_broken_publish_does_not_close_the_window():
    # the first copy went out before the link broke: its answer may be in the broker's backlog
    t, net, ticks = online()
    net.fail_publish = 1
    assert t.send('[2, "3.1", "Heartbeat", {}]')
    t.step()
    assert not t.connected
    net.session_present = True
    ticks.advance(2000)
    t.step()
    assert t.connected
    t.step()  # the same frame published again
    assert net.published == [(b"CP001/in", b'[2, "3.1", "Heartbeat", {}]', 1)]
    net.pending += [(b"CP001/out", b'[3,"3.1",{"currentTime":"2026-11-21T12:00:00Z"}]'),
                    (b"CP001/out", b'[2,"old","RemoteStartTransaction",{}]')]
    t.step()
    t.step()
    assert received(t)[1] is True and received(t)[1] is True


def test_stale_window_unit_edges():
    w = StaleWindow(2000)
    w.connected(True, 100)
    w.published(b'[2, "9.1", "StatusNotification", {}]')
    w.published(b'[3, "cs-7", {}]')  # an answer of ours asks nothing
    assert w.is_stale(2099, '[2,"x","Reset",{}]')
    assert w.is_stale(2099, '[3,"cs-7",{}]')
    assert not w.is_stale(2099, '[4, "9.1", "GenericError", "", {}]')
    assert not w.is_stale(2099, '[2,"y","Reset",{}]')  # closed for good on this connection
    w.connected(True, 5000)
    assert w.is_stale(6999, '[2,"z","Reset",{}]')
    assert not w.is_stale(7000, '[2,"z","Reset",{}]')


def test_nothing_is_stale_on_a_fresh_session():
    w = StaleWindow(2000)
    w.connected(False, 0)
    assert not w.is_stale(0)
    t, net, ticks = make()
    net.pending = [(b"CP001/out", b"hello")]
    t.step()
    t.step()
    assert received(t) == ("hello", False)


def test_duplicate_inbound_frames_are_passed_through():
    t, net, ticks = online()
    frame = b"[2,\"cs-1\",\"Reset\",{\"type\":\"Soft\"}]"
    net.pending = [(b"CP001/out", frame), (b"CP001/out", frame)]
    t.step()
    assert received(t) == (frame.decode(), False)
    assert received(t) == (frame.decode(), False)


def test_full_inbox_stops_reading_the_socket():
    t, net, ticks = online(inbox_len=2)
    net.pending = [(b"CP001/out", b"m%d" % i) for i in range(3)]
    t.step()
    calls = net.check_calls
    t.step()
    assert net.check_calls == calls and len(net.pending) == 1
    assert received(t) == ("m0", False)
    t.step()
    assert [received(t), received(t)] == [("m1", False), ("m2", False)]
    assert t.status["dropped"] == 0


def test_frame_arriving_in_a_puback_wait_with_the_inbox_full_is_refused_and_redelivered():
    t, net, ticks = online(inbox_len=2)
    net.session_present = True
    net.pending = [(b"CP001/out", b"m%d" % i) for i in range(5)]
    net.ahead = 5  # all five reach us while we wait for the PUBACK of our own frame
    assert t.send("ours")
    t.step()
    # our frame is acknowledged; m0 and m1 are taken, m2..m4 are refused (no PUBACK)
    assert net.published == [(b"CP001/in", b"ours", 1)] and not len(t.outbox)
    assert net.unacked == [(b"CP001/out", b"m%d" % i) for i in (2, 3, 4)]
    assert t.status["refused"] == 3 and t.status["dropped"] == 0 and t.connected
    t.step()  # refusing: the socket is not read while the taken frames wait
    assert net.check_calls == 0 and t.connected
    assert [received(t), received(t)] == [("m0", False), ("m1", False)]
    t.step()  # the inbox is empty: reconnect to have the refused frames again
    assert not t.connected and net.clients[0].closed and t.status["failures"] == 0
    ticks.advance(999)
    t.step()
    assert len(net.connects) == 1  # never two CONNECTs within a second
    ticks.advance(1)
    t.step()
    assert t.connected and len(net.connects) == 2
    t.step()
    # the redelivered backlog is seconds old: not stale, although the session was resumed
    assert [received(t), received(t)] == [("m2", False), ("m3", False)]
    t.step()
    assert [received(t), received(t)] == [("m4", False), None]
    assert t.status["received"] == 5 and net.unacked == []


def test_while_refusing_the_outbox_still_goes_out_and_the_reconnect_waits_for_the_inbox():
    t, net, ticks = online(inbox_len=1)
    net.pending = [(b"CP001/out", b"a"), (b"CP001/out", b"b")]
    net.ahead = 2
    t.send("one")
    t.send("two")
    t.step()
    ticks.advance(20)
    t.step()  # "a" still waits in the inbox: no reconnect yet, but "two" is published
    assert [m for _, m, _ in net.published] == [b"one", b"two"] and t.connected
    assert net.unacked == [(b"CP001/out", b"b")] and net.check_calls == 0
    assert received(t) == ("a", False)
    t.step()
    assert not t.connected
    ticks.advance(1000)
    t.step()
    t.step()
    assert received(t) == ("b", False)


def test_inbox_holds_a_bounded_number_of_bytes():
    t, net, ticks = online(inbox_bytes=100)
    net.pending = [(b"CP001/out", b"x" * 300), (b"CP001/out", b"y" * 10)]
    t.step()
    assert len(t.inbox) == 1 and t.inbox.bytes == 300  # an empty inbox takes any frame
    assert len(net.pending) == 1  # and over budget the socket is not read
    assert received(t)[0] == "x" * 300 and t.inbox.bytes == 0
    t.step()
    assert received(t) == ("y" * 10, False)


def test_can_send_only_while_connected_with_room_in_the_outbox():
    t, net, ticks = make(outbox_len=1)
    assert not t.can_send()
    t.step()
    assert t.can_send()
    t.send("f")
    assert not t.can_send()


def test_frames_on_other_topics_or_not_utf8_are_dropped():
    t, net, ticks = online()
    net.pending = [(b"CP002/out", b"x"), (b"CP001/out", b"\xff\xfe")]
    t.step()
    assert received(t) is None and t.status["dropped"] == 2


# -- configuration checks ----------------------------------------------------------------

def test_topic_templates_are_checked():
    assert make_topic("{id}/in", "CP001") == b"CP001/in"
    assert make_topic("ocpp/v16/{id}/in", "CP001") == b"ocpp/v16/CP001/in"
    with pytest.raises(ValueError, match="7 slashes"):
        make_topic("a/b/c/d/e/f/g/{id}/in", "CP001")
    for bad in ("{id}/#", "+/{id}", "$aws/{id}", "{idx}/in", "x" * 257):
        with pytest.raises(ValueError):
            make_topic(bad, "CP001")


def test_client_id_is_checked():
    for bad in ("", "CP/1", "CP+1", "CP#1", "x" * 129):
        with pytest.raises(ValueError):
            MqttTransport(bad, "broker.example")
    MqttTransport("x" * 128, "broker.example")


def test_stop_disconnects_politely():
    t, net, ticks = online()
    t.close()
    assert net.clients[0].closed and not t.connected


def test_pem_blocks_gives_every_block_as_der_and_leaves_der_alone():
    import base64
    one, two = b"\x30\x82first", b"\x30\x82second-block"

    def pem(der, label="CERTIFICATE"):
        body = base64.encodebytes(der).decode()
        return "-----BEGIN %s-----\n%s-----END %s-----\n" % (label, body, label)
    bundle = ("Bag Attributes: junk\n" + pem(one) + pem(two, "PRIVATE KEY")).encode()
    assert pem_blocks(bundle) == [one, two]
    assert pem_blocks(pem(one).encode().rstrip(b"\n")) == [one]
    assert pem_blocks(one) == [one]
