"""The fleet bridge's parts without processes: the shard hash and the AWS IoT rule that must
compute the same one, presence from Mosquitto's log lines and AWS's lifecycle events, the
policies, the Basic credentials (as the firmware builds them), /metrics, the command line."""
import base64
import hashlib
import json
import re

import pytest

from chargepoint.transport.websocket import password_of
from tools import policy
from tools.bridge import http, presence, shard
from tools.bridge.__main__ import parse_args
from tools.bridge.core import Metrics, _charger_of, load_auth

IDS = ["CP%03d" % i for i in range(200)] + ["RDAM 123", "Ladesäule/7", "x"]


def test_a_charger_belongs_to_the_first_four_hex_digits_of_its_md5_modulo_n():
    digest = hashlib.md5(b"CP001").hexdigest()
    assert shard.shard_of("CP001", 7) == int(digest[:4], 16) % 7
    for n in (1, 2, 3, 16):
        assert {shard.shard_of(i, n) for i in IDS} == set(range(n))


def _evaluate_rule(sql, charger_id):
    """The rule's WHERE clause, with AWS IoT SQL's functions as their documentation says."""
    where = sql.split(" WHERE ", 1)[1]
    functions = {
        "md5": lambda s: hashlib.md5(s.encode("utf-8")).hexdigest(),
        "lower": str.lower,
        "substring": lambda s, start, end: s[start:end],  # 0-based, end exclusive
        "indexof": lambda s, part: s.find(part),
        "mod": lambda a, b: a % b,
        "topic": lambda level: charger_id,
    }
    expression = re.sub(r"(?<![<>!=])=(?!=)", "==", where)
    return eval(expression, {"__builtins__": {}}, functions)  # noqa: S307 - our own SQL


@pytest.mark.parametrize("count", [2, 3, 5, 16])
def test_the_aws_rule_picks_the_same_shard_as_the_bridge(count):
    for index in range(count):
        sql = shard.rule_sql(index, count)
        assert sql.startswith("SELECT * FROM '+/in' WHERE mod(")
        for cp_id in IDS:
            assert _evaluate_rule(sql, cp_id) == (shard.shard_of(cp_id, count) == index)
    assert shard.republish_topic(1) == "bridge/1/${topic(1)}/in"


def test_a_shard_is_i_of_n():
    assert shard.parse("1/2") == (1, 2)
    for bad in ("2/2", "-1/2", "1", "a/b", "0/0"):
        with pytest.raises(ValueError):
            shard.parse(bad)
    with pytest.raises(SystemExit):
        parse_args(["--broker", "h:1", "--ca", "c", "--cert", "c", "--key", "k",
                    "--csms", "ws://h/ocpp", "--shard", "2/2"])
    with pytest.raises(SystemExit):
        parse_args(["--broker", "h:1", "--ca", "c", "--cert", "c", "--key", "k",
                    "--csms", "http://h/ocpp"])


# Lines Mosquitto 2.0.11 published to $SYS/broker/log/N here (tools.broker, log_dest topic).
MOSQUITTO_LINES = [
    (b"2026-12-07T04:23:27: New connection from 127.0.0.1:60245 on port 58219.", None),
    (b"2026-12-07T04:23:27: New client connected from 127.0.0.1:60245 as CP001 (p2, c1, k30, "
     b"u'CP001').", ("CP001", True)),
    (b"2026-12-07T04:23:27: Client CP001 disconnected.", ("CP001", False)),
    (b"2026-12-07T04:23:28: Client CP001 closed its connection.", ("CP001", False)),
    (b"2026-12-07T04:23:28: Client CP 9 has exceeded timeout, disconnecting.", ("CP 9", False)),
    (b"2026-12-07T04:23:28: Socket error on client CP002, disconnecting.", ("CP002", False)),
    (b"2026-12-07T04:23:28: Client CP002 already connected, closing old connection.", None),
    (b"2026-12-07T04:23:28: Client <unknown> disconnected due to protocol error.", None),
    (b"2026-12-07T04:23:28: Saving in-memory database to /tmp/mosquitto.db.", None),
]


def test_presence_from_the_stand_ins_log_lines():
    for line, expected in MOSQUITTO_LINES:
        assert presence.event("$SYS/broker/log/N", line) == expected, line
    assert presence.event("CP001/in", b"Client CP001 disconnected.") is None


def test_presence_from_aws_lifecycle_events_a_takeover_is_no_absence():
    def aws(kind, client_id, **fields):
        payload = json.dumps(dict(clientId=client_id, eventType=kind, **fields)).encode()
        return presence.event("$aws/events/presence/%s/%s" % (kind, client_id), payload)

    assert aws("connected", "CP001") == ("CP001", True)
    assert aws("disconnected", "CP001", disconnectReason="CLIENT_INITIATED_DISCONNECT") == \
        ("CP001", False)
    assert aws("disconnected", "CP001", disconnectReason="DUPLICATE_CLIENTID") is None
    assert presence.event("$aws/events/subscriptions/subscribed/CP001", b"{}") is None


def test_the_bridge_identities_read_presence_on_the_stand_in_not_on_aws():
    acl = policy.mosquitto_acl("csms", ("bridge-0", "bridge-1"))
    for user in ("bridge-0", "bridge-1"):
        block = acl.split("user %s\n" % user, 1)[1].split("\n\n", 1)[0]
        assert block.strip().split("\n") == ["topic read +/in", "topic write +/out",
                                             "topic read $SYS/broker/log/N"]
    assert "$SYS" not in acl.split("user bridge-0")[0]  # not the chargers', not the csms's
    document = json.dumps(policy.bridge_policy("eu-west-1", "123456789012"))
    assert "$SYS" not in document
    assert "topicfilter/$aws/events/presence/*/*" in document
    assert "topicfilter/bridge/*/*/in" in document and "client/bridge-*" in document


def test_basic_credentials_are_the_firmwares(tmp_path):
    keys = {"CP001": "00112233445566778899AABBCCDDEEFF", "CP 2": "0123456789abcdef0123"}
    path = tmp_path / "auth.json"
    path.write_text(json.dumps(keys))
    for cp_id, header in load_auth(str(path)).items():
        scheme, token = header.split(" ")
        assert scheme == "Basic"
        assert base64.b64decode(token) == cp_id.encode() + b":" + password_of(keys[cp_id])


def test_the_charger_id_is_the_level_before_in():
    assert _charger_of("CP001/in") == "CP001"
    assert _charger_of("bridge/1/CP001/in") == "CP001"
    assert _charger_of("CP001/out") is None and _charger_of("/in") is None


def test_metrics_are_prometheus_text_and_healthz_needs_every_connection():
    class Connection:
        def __init__(self, connected, published):
            self.connected, self.published = connected, published

    class Bridge:
        metrics = Metrics()
        pool = [Connection(True, 5), Connection(False, 2)]

        @property
        def healthy(self):
            return all(c.connected for c in self.pool)

    bridge = Bridge()
    bridge.metrics.to_csms, bridge.metrics.held, bridge.metrics.websockets = 7, 2, 3
    text = bridge.metrics.render(bridge.pool)
    samples = {}
    for line in text.splitlines():
        if not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    assert samples['bridge_frames_total{direction="to_csms"}'] == 7
    assert samples["bridge_frames_held"] == 2 and samples["bridge_websockets_open"] == 3
    assert samples["bridge_mqtt_connections_up"] == 1
    assert samples['bridge_mqtt_publishes_total{connection="1"}'] == 2
    names = {re.match(r"[a-z_]+", n).group(0) for n in samples}
    for name in names:
        assert "# TYPE %s " % name in text and "# HELP %s " % name in text
    assert http.answer(bridge, "GET", "/healthz")[0] == 503
    bridge.pool[1].connected = True
    assert http.answer(bridge, "GET", "/healthz")[0] == 200
    assert http.answer(bridge, "GET", "/metrics?x=1")[2] == bridge.metrics.render(bridge.pool)
    assert http.answer(bridge, "POST", "/metrics")[0] == 405
    assert http.answer(bridge, "GET", "/")[0] == 404


def test_a_pool_of_connections_splits_a_shard_into_buckets():
    count, connections = 3, 4
    for cp_id in IDS:
        index = shard.shard_of(cp_id, count)
        k = shard.connection_of(cp_id, count, connections)
        bucket = shard.bucket(index, count, k)
        assert 0 <= k < connections
        # the AWS rule of that bucket (of N*K) is the one that picks the charger
        assert _evaluate_rule(shard.rule_sql(bucket, count * connections), cp_id)
    assert {shard.connection_of(i, count, connections) for i in IDS} == set(range(connections))
