"""Who may use which MQTT topic: one rule table, as AWS IoT policies and as the Mosquitto ACL.

A rule is (access, topic): `write` = publish, `read` = subscribe and receive, in MQTT filter
syntax (`+` one level, `#` the rest), `{id}` standing for the charge point's own id. AWS IoT
and the stand-in then enforce the same grants:

- AWS: `{id}` becomes `${iot:Connection.Thing.ThingName}` (it resolves only when the client id
  is the thing name and the certificate is attached to the thing); `+` and `#` become `*`,
  because AWS policy resources know only `*`/`?`, and a literal `+` there matches a topic
  named "+". So `*` also spans levels: `*/in` admits `a/b/in`, which `+/in` does not.
- Mosquitto: `{id}` becomes `%u` (the certificate CN, which the broker also makes the client id).
  The `$aws/...` topics belong to AWS services (Device Shadow, Jobs, lifecycle events) the
  stand-in has not got, so they stay out of the ACL and the stand-in keeps denying them, but
  for fleet provisioning's (`$aws/certificates/...`, `$aws/provisioning-templates/...`),
  which tools/fleetprov.py answers there.
  `$SYS/...` topics are Mosquitto's own and exist only there: they stay out of AWS policies.
"""

import json

WRITE = "write"
READ = "read"

# AWS IoT fleet provisioning by claim (its MQTT API: CreateCertificateFromCsr, RegisterThing),
# which the stand-in emulates (tools/fleetprov.py). What a device holding the shared claim
# certificate may do, and nothing else; `{template}` is the provisioning template's name.
CREATE_FROM_CSR = "$aws/certificates/create-from-csr/json"
REGISTER_THING = "$aws/provisioning-templates/{template}/provision/json"
CLAIM = (
    (WRITE, CREATE_FROM_CSR),
    (READ, CREATE_FROM_CSR + "/+"),
    (WRITE, REGISTER_THING),
    (READ, REGISTER_THING + "/+"),
)

# What a charge point may do, besides connecting with its own id as client id. The same
# provisioning API (any template) renews its certificate (chargepoint.transport.mqtt.renew).
CHARGER = (
    (WRITE, "{id}/in"),
    (READ, "{id}/out"),
    (WRITE, "$aws/things/{id}/shadow/#"),
    (READ, "$aws/things/{id}/shadow/#"),
    (WRITE, "$aws/things/{id}/jobs/#"),
    (READ, "$aws/things/{id}/jobs/#"),
) + tuple((a, t.replace("{template}", "+")) for a, t in CLAIM)

# What the Central System may do: every charger's /in and /out, nothing of theirs in $aws.
CSMS = (
    (READ, "+/in"),
    (WRITE, "+/out"),
)

# What the fleet bridge (tools/bridge) may do: the Central System's rights, and the chargers'
# presence: AWS's lifecycle events, or on the stand-in Mosquitto's notice log lines (tools.broker
# publishes them to $SYS/broker/log/N; "New client connected ... as CP001", "Client CP001
# disconnected."), which carry the same news.
BRIDGE_PRESENCE_AWS = "$aws/events/presence/+/+"
BRIDGE_PRESENCE_STANDIN = "$SYS/broker/log/N"
BRIDGE = CSMS + (
    (READ, BRIDGE_PRESENCE_AWS),
    (READ, BRIDGE_PRESENCE_STANDIN),
)

# The stand-in's provisioning service: the other end of the same topics, any template.
PROVISIONER = (
    (READ, CREATE_FROM_CSR),
    (WRITE, CREATE_FROM_CSR + "/+"),
    (READ, REGISTER_THING.replace("{template}", "+")),
    (WRITE, REGISTER_THING.replace("{template}", "+") + "/+"),
)

THING_NAME = "${iot:Connection.Thing.ThingName}"
_RESERVED = "$aws/"
_EMULATED = ("$aws/certificates/", "$aws/provisioning-templates/")
_STANDIN_ONLY = "$SYS/"


def reserved(topic):
    """True for topics of AWS's own services, which the stand-in does not emulate."""
    return topic.startswith(_RESERVED) and not topic.startswith(_EMULATED)


def standin_only(topic):
    """True for Mosquitto's own topics, which AWS IoT has not got."""
    return topic.startswith(_STANDIN_ONLY)


# --- Mosquitto -------------------------------------------------------------------------------

def mosquitto_acl(csms, bridges=(), claim=None, provisioner=None, template="+"):
    """The ACL file tools/broker.py writes: charger rules as `pattern` lines, then the csms user,
    then one user per bridge identity (a certificate CN each: one MQTT session per shard),
    the claim certificate's CN (`claim`, for provisioning `template`, "+" any) and the
    provisioning service's (`provisioner`) when given."""
    lines = ["pattern %s %s" % (access, topic.replace("{id}", "%u"))
             for access, topic in CHARGER if not reserved(topic)]
    users = [(csms, CSMS)] + [(bridge, BRIDGE) for bridge in bridges]
    if claim:
        users.append((claim, tuple((a, t.replace("{template}", template)) for a, t in CLAIM)))
    if provisioner:
        users.append((provisioner, PROVISIONER))
    for user, rules in users:
        lines += ["", "user " + user]
        lines += ["topic %s %s" % (access, topic) for access, topic in rules
                  if not reserved(topic)]
    return "\n".join(lines) + "\n"


# --- AWS IoT ---------------------------------------------------------------------------------

def _aws_pattern(topic, thing):
    if "{id}" in topic and thing is None:
        raise ValueError("rule %r needs a thing name" % topic)
    levels = ["*" if level in ("+", "#") else level for level in topic.split("/")]
    return "/".join(levels).replace("{id}", thing or "")


def _statements(rules, arn, thing, client_id):
    """Allow statements in a fixed order: Connect, Publish, Subscribe, Receive."""
    rules = [(a, t) for a, t in rules if not standin_only(t)]
    writes = [_aws_pattern(t, thing) for a, t in rules if a == WRITE]
    reads = [_aws_pattern(t, thing) for a, t in rules if a == READ]
    out = [{"Effect": "Allow", "Action": "iot:Connect",
            "Resource": [arn + "client/" + client_id]}]
    if writes:
        out.append({"Effect": "Allow", "Action": "iot:Publish",
                    "Resource": [arn + "topic/" + p for p in writes]})
    if reads:
        out.append({"Effect": "Allow", "Action": "iot:Subscribe",
                    "Resource": [arn + "topicfilter/" + p for p in reads]})
        out.append({"Effect": "Allow", "Action": "iot:Receive",
                    "Resource": [arn + "topic/" + p for p in reads]})
    return out


def arn_prefix(region, account, partition="aws"):
    return "arn:%s:iot:%s:%s:" % (partition, region, account)


def charger_policy(region, account, partition="aws"):
    """The one policy every charger's certificate gets: each thing only its own topics."""
    return {"Version": "2012-10-17",
            "Statement": _statements(CHARGER, arn_prefix(region, account, partition),
                                     THING_NAME, THING_NAME)}


def csms_policy(region, account, client_id, partition="aws"):
    """The Central System's policy, for a certificate whose MQTT client id is `client_id`."""
    return {"Version": "2012-10-17",
            "Statement": _statements(CSMS, arn_prefix(region, account, partition),
                                     None, client_id)}


def bridge_policy(region, account, partition="aws"):
    """The fleet bridge's policy: client ids bridge-* (one persistent session per shard and
    connection), every charger's /in and /out, the presence events, and the per-bucket
    topics the republish rules write (tools.bridge.shard.RULE_TOPIC)."""
    arn = arn_prefix(region, account, partition)
    out = _statements(BRIDGE + ((READ, "bridge/+/+/in"),), arn, None, "bridge-*")
    return {"Version": "2012-10-17", "Statement": out}


def claim_policy(region, account, template, partition="aws"):
    """The claim certificate's policy (fleet provisioning by claim): connect with any client
    id (each charger its own id, before it is a thing) and use the provisioning API of
    `template` only."""
    rules = tuple((a, t.replace("{template}", template)) for a, t in CLAIM)
    return {"Version": "2012-10-17",
            "Statement": _statements(rules, arn_prefix(region, account, partition), None, "*")}


def dumps(document):
    """Canonical JSON, so an unchanged policy compares equal to what AWS stores."""
    return json.dumps(document, indent=2, sort_keys=True)
