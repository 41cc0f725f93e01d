"""Provisioning on AWS IoT Core (tools/provision.py) against moto, and the one rule table
(tools/policy.py) behind both the AWS policies and the stand-in's Mosquitto ACL."""

import json
import os
import re
import stat

import boto3
import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from moto import mock_aws
from moto.iot.exceptions import InvalidRequestException
from moto.iot.models import IoTBackend

from chargepoint import devconfig
from tools import policy, provision

REGION = "eu-west-1"
ACCOUNT = "123456789012"  # moto's account
ARN = "arn:aws:iot:%s:%s:" % (REGION, ACCOUNT)


@pytest.fixture
def aws(monkeypatch):
    for name in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    # AWS answers one endpoint per account; moto makes up a new one at every call.
    endpoints = {}
    describe = IoTBackend.describe_endpoint

    def stable(self, endpoint_type):
        key = (self.account_id, self.region_name, endpoint_type)
        return endpoints.setdefault(key, describe(self, endpoint_type))
    monkeypatch.setattr(IoTBackend, "describe_endpoint", stable)
    with mock_aws():
        yield boto3.client("iot", region_name=REGION)


@pytest.fixture
def ca_file(tmp_path):
    path = tmp_path / "AmazonRootCA1.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def out(tmp_path):
    return str(tmp_path / "out")


def run(*argv):
    return provision.main([str(a) for a in argv])


def certificates(iot):
    return {c["certificateArn"]: c["status"] for c in iot.list_certificates()["certificates"]}


def thing_certificates(iot, thing):
    return iot.list_thing_principals(thingName=thing)["principals"]


def snapshot(folder):
    """Every file's bytes and mtime: a run that changes nothing leaves both alone."""
    return {name: (open(os.path.join(folder, name), "rb").read(),
                   os.stat(os.path.join(folder, name)).st_mtime_ns)
            for name in sorted(os.listdir(folder))}


# --- provisioning ----------------------------------------------------------------------------

def test_new_charger_gets_thing_active_certificate_policy_and_folder(aws, out, ca_file, capsys):
    assert run("--id", "CP001", "--out", out, "--ca", ca_file) == 0
    assert aws.describe_thing(thingName="CP001")["thingName"] == "CP001"
    [cert_arn] = thing_certificates(aws, "CP001")
    assert certificates(aws) == {cert_arn: "ACTIVE"}
    assert [p["policyName"] for p in aws.list_attached_policies(target=cert_arn)["policies"]] \
        == ["ChargePointPolicy"]
    folder = os.path.join(out, "CP001")
    assert sorted(os.listdir(folder)) == ["AmazonRootCA1.pem", "CP001.cert.pem",
                                          "CP001.private.key", "config.json"]
    cert_id = cert_arn.rsplit("/", 1)[1]
    description = aws.describe_certificate(certificateId=cert_id)["certificateDescription"]
    pem = description["certificatePem"]
    assert open(os.path.join(folder, "CP001.cert.pem")).read().strip() == pem.strip()
    assert "CP001: " in capsys.readouterr().out


def test_config_json_is_valid_for_the_device(aws, out, ca_file):
    run("--id", "CP001", "--out", out, "--ca", ca_file)
    path = os.path.join(out, "CP001", "config.json")
    with open(path) as f:
        raw = json.load(f)
    endpoint = aws.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
    assert re.fullmatch(r"[a-z0-9]+-ats\.iot\.eu-west-1\.amazonaws\.com", endpoint)
    assert raw == {"id": "CP001", "mqtt": {
        "endpoint": endpoint, "port": 8883, "ca": "AmazonRootCA1.pem",
        "cert": "CP001.cert.pem", "key": "CP001.private.key", "keepalive": 300}}
    cfg = devconfig.check(raw, path)
    assert cfg["mqtt"]["key"] == os.path.join(out, "CP001", "CP001.private.key")


def test_private_key_is_owner_only_and_never_printed(aws, out, ca_file, capsys):
    run("--id", "CP001", "--out", out, "--ca", ca_file)
    key = os.path.join(out, "CP001", "CP001.private.key")
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    text = open(key).read()
    assert "PRIVATE KEY-----" in text
    printed = capsys.readouterr()
    assert "PRIVATE KEY" not in printed.out + printed.err
    assert text.splitlines()[1] not in printed.out + printed.err


def test_second_run_changes_nothing(aws, out, ca_file, capsys):
    run("--id", "CP001", "--out", out, "--ca", ca_file)
    before = snapshot(os.path.join(out, "CP001"))
    certs_before = certificates(aws)
    capsys.readouterr()
    assert run("--id", "CP001", "--out", out, "--ca", ca_file) == 0
    assert capsys.readouterr().out == "CP001: unchanged\n"
    assert certificates(aws) == certs_before
    assert snapshot(os.path.join(out, "CP001")) == before
    assert len(aws.list_policy_versions(policyName="ChargePointPolicy")["policyVersions"]) == 1


def test_rotate_issues_new_certificate_and_retires_the_old(aws, out, ca_file):
    run("--id", "CP001", "--out", out, "--ca", ca_file)
    folder = os.path.join(out, "CP001")
    [old] = thing_certificates(aws, "CP001")
    old_key = open(os.path.join(folder, "CP001.private.key")).read()
    config = open(os.path.join(folder, "config.json")).read()
    assert run("--id", "CP001", "--out", out, "--ca", ca_file, "--rotate") == 0
    [new] = thing_certificates(aws, "CP001")
    assert new != old
    assert certificates(aws) == {old: "INACTIVE", new: "ACTIVE"}
    assert aws.list_attached_policies(target=old)["policies"] == []
    assert [p["policyName"] for p in aws.list_attached_policies(target=new)["policies"]] \
        == ["ChargePointPolicy"]
    assert open(os.path.join(folder, "CP001.private.key")).read() != old_key
    assert stat.S_IMODE(os.stat(os.path.join(folder, "CP001.private.key")).st_mode) == 0o600
    assert open(os.path.join(folder, "config.json")).read() == config
    # and the rotated state is the new steady state
    assert run("--id", "CP001", "--out", out, "--ca", ca_file) == 0
    assert thing_certificates(aws, "CP001") == [new]


def test_csv_with_id_column(aws, out, ca_file, tmp_path):
    path = tmp_path / "chargers.csv"
    path.write_text("site,id\nGarage,CP001\n\nYard,CP002\n")
    assert run("--csv", path, "--out", out, "--ca", ca_file) == 0
    for cp_id in ("CP001", "CP002"):
        assert len(thing_certificates(aws, cp_id)) == 1
        with open(os.path.join(out, cp_id, "config.json")) as f:
            assert json.load(f)["id"] == cp_id
    assert len(certificates(aws)) == 2


def test_csv_with_one_id_a_line(aws, out, ca_file, tmp_path):
    path = tmp_path / "chargers.csv"
    path.write_text("# site A\nCP001\nCP002\n")
    assert run("--csv", path, "--out", out, "--ca", ca_file) == 0
    assert sorted(t["thingName"] for t in aws.list_things()["things"]) == ["CP001", "CP002"]


def test_csv_with_a_bad_id_provisions_nothing(aws, out, tmp_path, capsys):
    path = tmp_path / "chargers.csv"
    path.write_text("CP001\nCP/02\n")
    assert run("--csv", path, "--out", out) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "chargers.csv:2: invalid charger id 'CP/02'" in err
    assert aws.list_things()["things"] == []


def test_thing_type_and_group(aws, out, ca_file):
    run("--id", "CP001", "--out", out, "--ca", ca_file, "--thing-type", "ChargePoint",
        "--thing-group", "SiteA")
    assert aws.describe_thing(thingName="CP001")["thingTypeName"] == "ChargePoint"
    groups = aws.list_thing_groups_for_thing(thingName="CP001")["thingGroups"]
    assert [g["groupName"] for g in groups] == ["SiteA"]
    assert run("--id", "CP001", "--out", out, "--ca", ca_file, "--thing-type", "ChargePoint",
               "--thing-group", "SiteA") == 0


def test_without_ca_the_folder_says_what_to_add(aws, out, capsys):
    assert run("--id", "CP001", "--out", out) == 0
    folder = os.path.join(out, "CP001")
    assert "AmazonRootCA1.pem" in open(os.path.join(folder, "README.txt")).read()
    path = os.path.join(folder, "config.json")
    with open(path) as f:
        raw = json.load(f)
    assert raw["mqtt"]["ca"] == "AmazonRootCA1.pem"
    with pytest.raises(devconfig.ConfigError, match="mqtt.ca: file .*AmazonRootCA1.pem not "):
        devconfig.check(raw, path)


def test_operator_edits_to_config_json_are_kept(aws, out, ca_file):
    run("--id", "CP001", "--out", out, "--ca", ca_file)
    path = os.path.join(out, "CP001", "config.json")
    with open(path) as f:
        raw = json.load(f)
    raw["wifi"] = {"ssid": "garage", "password": "secret"}
    with open(path, "w") as f:
        json.dump(raw, f)
    run("--id", "CP001", "--out", out, "--ca", ca_file)
    with open(path) as f:
        assert json.load(f)["wifi"] == {"ssid": "garage", "password": "secret"}


def test_certificate_from_csr_writes_no_key(aws, out, ca_file, tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CP001")])).sign(key, hashes.SHA256())
    path = tmp_path / "CP001.csr"
    path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    assert run("--id", "CP001", "--out", out, "--ca", ca_file, "--csr", path) == 0
    folder = os.path.join(out, "CP001")
    assert "CP001.private.key" not in os.listdir(folder)
    assert "CP001.private.key" in open(os.path.join(folder, "README-key.txt")).read()
    [cert_arn] = thing_certificates(aws, "CP001")
    assert certificates(aws) == {cert_arn: "ACTIVE"}
    assert run("--id", "CP001", "--out", out, "--ca", ca_file) == 0  # idempotent too
    assert len(certificates(aws)) == 1


def test_thing_with_certificate_but_no_local_folder_is_refused(aws, out, ca_file, tmp_path,
                                                                capsys):
    run("--id", "CP001", "--out", out, "--ca", ca_file)
    elsewhere = str(tmp_path / "elsewhere")
    assert run("--id", "CP001", "--out", elsewhere, "--ca", ca_file) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--rotate" in err
    assert len(certificates(aws)) == 1


def test_key_not_matching_certificate_is_refused(aws, out, ca_file, capsys):
    run("--id", "CP001", "--out", out, "--ca", ca_file)
    key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    with open(os.path.join(out, "CP001", "CP001.private.key"), "wb") as f:
        f.write(key)
    assert run("--id", "CP001", "--out", out, "--ca", ca_file) == 2
    assert "does not belong to" in capsys.readouterr().err


def test_aws_error_is_one_line(aws, out, ca_file, monkeypatch, capsys):
    def refuse(self, *args, **kwargs):
        raise InvalidRequestException("Thing type is deprecated")
    monkeypatch.setattr(IoTBackend, "create_thing", refuse)
    assert run("--id", "CP001", "--out", out, "--ca", ca_file) == 1
    assert capsys.readouterr().err == (
        "provision: CP001: AWS InvalidRequestException: Thing type is deprecated\n")


def test_missing_region_is_one_line(monkeypatch, tmp_path, capsys):
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    assert run("--id", "CP001", "--out", tmp_path) == 2
    assert capsys.readouterr().err == (
        "provision: no AWS region: pass --region, or set AWS_REGION or a profile's region\n")


# --- policies --------------------------------------------------------------------------------

def test_charger_policy_document(aws, out, ca_file):
    run("--id", "CP001", "--out", out, "--ca", ca_file)
    [cert_arn] = thing_certificates(aws, "CP001")
    [attached] = aws.list_attached_policies(target=cert_arn)["policies"]
    document = json.loads(aws.get_policy(policyName=attached["policyName"])["policyDocument"])
    grants = {}
    for statement in document["Statement"]:
        assert statement["Effect"] == "Allow"
        grants[statement["Action"]] = [
            r.replace("${iot:Connection.Thing.ThingName}", "CP001")
            for r in statement["Resource"]]
    csr_api = "$aws/certificates/create-from-csr/json"
    register_api = "$aws/provisioning-templates/*/provision/json"
    assert grants == {
        "iot:Connect": [ARN + "client/CP001"],
        "iot:Publish": [ARN + "topic/CP001/in",
                        ARN + "topic/$aws/things/CP001/shadow/*",
                        ARN + "topic/$aws/things/CP001/jobs/*",
                        ARN + "topic/" + csr_api, ARN + "topic/" + register_api],
        "iot:Subscribe": [ARN + "topicfilter/CP001/out",
                          ARN + "topicfilter/$aws/things/CP001/shadow/*",
                          ARN + "topicfilter/$aws/things/CP001/jobs/*",
                          ARN + "topicfilter/" + csr_api + "/*",
                          ARN + "topicfilter/" + register_api + "/*"],
        "iot:Receive": [ARN + "topic/CP001/out",
                        ARN + "topic/$aws/things/CP001/shadow/*",
                        ARN + "topic/$aws/things/CP001/jobs/*",
                        ARN + "topic/" + csr_api + "/*", ARN + "topic/" + register_api + "/*"],
    }
    # One policy for every charger: the thing name is a policy variable, not written in.
    assert "CP001" not in json.dumps(document)


def test_csms_policy_is_printed_as_json(capsys):
    assert run("--csms-policy", "--region", REGION, "--account", ACCOUNT) == 0
    document = json.loads(capsys.readouterr().out)
    assert document == {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iot:Connect", "Resource": [ARN + "client/csms"]},
        {"Effect": "Allow", "Action": "iot:Publish", "Resource": [ARN + "topic/*/out"]},
        {"Effect": "Allow", "Action": "iot:Subscribe", "Resource": [ARN + "topicfilter/*/in"]},
        {"Effect": "Allow", "Action": "iot:Receive", "Resource": [ARN + "topic/*/in"]},
    ]}


def test_csms_policy_asks_aws_for_the_account(aws, capsys):
    assert run("--csms-policy", "--csms-id", "central") == 0
    assert json.loads(capsys.readouterr().out)["Statement"][0]["Resource"] == [
        ARN + "client/central"]


def test_mosquitto_acl_is_the_stand_ins(aws):
    assert policy.mosquitto_acl("csms") == (
        "pattern write %u/in\npattern read %u/out\n"
        # fleet provisioning's API, which the stand-in answers: a charger renews through it
        "pattern write $aws/certificates/create-from-csr/json\n"
        "pattern read $aws/certificates/create-from-csr/json/+\n"
        "pattern write $aws/provisioning-templates/+/provision/json\n"
        "pattern read $aws/provisioning-templates/+/provision/json/+\n"
        "\nuser csms\ntopic read +/in\ntopic write +/out\n")


# --- one table, two enforcers ----------------------------------------------------------------

def _filter_matches(pattern, topic):
    """MQTT: does filter `pattern` match topic name `topic`?"""
    p, t = pattern.split("/"), topic.split("/")
    for i, level in enumerate(p):
        if level == "#":
            return True
        if i >= len(t) or (level != "+" and level != t[i]):
            return False
    return len(p) == len(t)


def _filter_covers(pattern, subscription):
    """Mosquitto's subscribe check: does ACL `pattern` admit the filter `subscription`?"""
    p, s = pattern.split("/"), subscription.split("/")
    for i, level in enumerate(p):
        if level == "#":
            return True
        if i >= len(s) or s[i] == "#" or (level != "+" and level != s[i]):
            return False
    return len(p) == len(s)


def acl_allows(acl, user, access, topic, subscribe=False):
    """What Mosquitto's acl_file grants `user` (pattern lines for all, topic lines per user)."""
    current = None
    for line in acl.splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] == "user":
            current = words[1]
            continue
        if words[0] == "pattern":
            grant, pattern = words[1], words[2].replace("%u", user)
        elif words[0] == "topic" and current == user:
            grant, pattern = words[1], words[2]
        else:
            continue
        if grant in (access, "readwrite"):
            if (_filter_covers if subscribe else _filter_matches)(pattern, topic):
                return True
    return False


def aws_allows(document, thing, action, resource):
    """What an AWS IoT policy of Allow statements grants a connection of thing `thing`."""
    for statement in document["Statement"]:
        if statement["Effect"] != "Allow" or statement["Action"] != action:
            continue
        for pattern in statement["Resource"]:
            pattern = pattern.replace("${iot:Connection.Thing.ThingName}", thing)
            regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c)
                            for c in pattern)
            if re.fullmatch(regex, resource):
                return True
    return False


TOPICS = [t.format(id=i) for i in ("CP001", "CP002", "csms") for t in (
    "{id}/in", "{id}/out", "{id}", "{id}/other", "{id}/in/x", "{id}/out/x",
    "$aws/things/{id}/shadow/update", "$aws/things/{id}/shadow/get/accepted",
    "$aws/things/{id}/jobs/notify-next", "$aws/things/{id}/jobs/42/update",
    "$aws/things/{id}/tunnels/notify")] + ["$SYS/broker/uptime", "in", "out"]
FILTERS = ["CP001/out", "CP002/out", "+/in", "+/out", "#", "CP001/#", "+/+",
           "$aws/things/CP001/shadow/update/accepted", "$aws/things/CP002/jobs/notify-next"]


def grants(allows):
    out = set()
    for topic in TOPICS:
        for access in (policy.READ, policy.WRITE):
            if allows(access, topic, False):
                out.add((access, topic))
    for f in FILTERS:
        if allows(policy.READ, f, True):
            out.add(("subscribe", f))
    return out


def test_acl_and_aws_policies_grant_the_same_topics():
    acl = policy.mosquitto_acl("csms")
    charger = policy.charger_policy(REGION, ACCOUNT)
    csms = policy.csms_policy(REGION, ACCOUNT, "csms")

    def via_aws(document, thing):
        def allows(access, topic, subscribe):
            if subscribe:
                return aws_allows(document, thing, "iot:Subscribe", ARN + "topicfilter/" + topic)
            if access == policy.WRITE:
                return aws_allows(document, thing, "iot:Publish", ARN + "topic/" + topic)
            return (aws_allows(document, thing, "iot:Receive", ARN + "topic/" + topic)
                    and aws_allows(document, thing, "iot:Subscribe",
                                   ARN + "topicfilter/" + topic))
        return allows

    def via_acl(user):
        return lambda access, topic, subscribe: acl_allows(acl, user, access, topic, subscribe)

    # The Central System: the same grants, but for one Mosquitto cannot help: `pattern` lines
    # apply to every user, so on the stand-in the csms may also act as a charger named "csms".
    as_charger = {("write", "csms/in"), ("read", "csms/out")}
    assert grants(via_aws(csms, "csms")) == grants(via_acl("csms")) - as_charger == {
        ("read", "CP001/in"), ("read", "CP002/in"), ("read", "csms/in"),
        ("write", "CP001/out"), ("write", "CP002/out"), ("write", "csms/out"),
        ("subscribe", "+/in")}
    assert aws_allows(csms, "csms", "iot:Connect", ARN + "client/csms")

    # A charger: the same on every topic but AWS's own services for its own thing, which
    # the stand-in does not have.
    on_aws, on_stand_in = grants(via_aws(charger, "CP001")), grants(via_acl("CP001"))
    assert on_stand_in == {("write", "CP001/in"), ("read", "CP001/out"),
                           ("subscribe", "CP001/out")}
    assert on_aws - on_stand_in == {
        (access, "$aws/things/CP001/" + t) for access in ("read", "write")
        for t in ("shadow/update", "shadow/get/accepted", "jobs/notify-next",
                  "jobs/42/update")} | {("subscribe", "$aws/things/CP001/shadow/update/accepted")}
    assert all(policy.reserved(topic) for _, topic in on_aws - on_stand_in)
    assert on_stand_in <= on_aws
    assert aws_allows(charger, "CP001", "iot:Connect", ARN + "client/CP001")
    assert not aws_allows(charger, "CP001", "iot:Connect", ARN + "client/CP002")


# --- fleet provisioning by claim -------------------------------------------------------------

class TemplateIot:
    """moto's IoT client with the provisioning-template calls moto has not got, kept here as
    AWS keeps them (a body per version, the default one answered)."""

    def __init__(self, iot):
        self._iot = iot
        self.templates = {}
        self.exceptions = iot.exceptions
        self.meta = iot.meta

    def __getattr__(self, name):
        return getattr(self._iot, name)

    def describe_provisioning_template(self, templateName):
        if templateName not in self.templates:
            raise self._iot.exceptions.ResourceNotFoundException(
                {"Error": {"Code": "ResourceNotFoundException", "Message": templateName}},
                "DescribeProvisioningTemplate")
        return dict(self.templates[templateName])

    def create_provisioning_template(self, templateName, templateBody, provisioningRoleArn,
                                     enabled, description=""):
        json.loads(templateBody)
        self.templates[templateName] = {"templateName": templateName,
                                        "templateBody": templateBody,
                                        "provisioningRoleArn": provisioningRoleArn,
                                        "enabled": enabled, "versions": 1}

    def create_provisioning_template_version(self, templateName, templateBody, setAsDefault):
        t = self.templates[templateName]
        t["versions"] += 1
        if setAsDefault:
            t["templateBody"] = templateBody

    def update_provisioning_template(self, templateName, provisioningRoleArn, enabled):
        self.templates[templateName].update(provisioningRoleArn=provisioningRoleArn,
                                            enabled=enabled)


ROLE = "arn:aws:iam::%s:role/IoTFleetProvisioning" % ACCOUNT


def test_claim_makes_the_template_the_claim_policy_and_certificate_once(aws, out, ca_file):
    iot = TemplateIot(aws)
    account = provision.Account(iot, boto3.client("sts", region_name=REGION))
    done = provision.provision_claim(account, "chargers", out, ROLE, ca=ca_file)
    assert done[:3] == ["policy ChargePointPolicy created",
                        "claim policy ChargePointClaimPolicy created",
                        "template chargers created"]
    body = json.loads(iot.templates["chargers"]["templateBody"])
    assert body["Resources"]["thing"]["Properties"]["ThingName"] == {"Ref": "SerialNumber"}
    assert body["Resources"]["policy"]["Properties"]["PolicyName"] == "ChargePointPolicy"
    assert body["Resources"]["certificate"]["Properties"]["Status"] == "ACTIVE"
    folder = os.path.join(out, "claim-chargers")
    record = json.load(open(os.path.join(folder, "claim.json")))
    cert_id = record["certificateId"]
    assert aws.describe_certificate(certificateId=cert_id)[
        "certificateDescription"]["status"] == "ACTIVE"
    [attached] = aws.list_attached_policies(target=record["certificateArn"])["policies"]
    assert attached["policyName"] == "ChargePointClaimPolicy"
    document = json.loads(aws.get_policy(policyName="ChargePointClaimPolicy")["policyDocument"])
    assert document == policy.claim_policy(REGION, ACCOUNT, "chargers")
    assert stat.S_IMODE(os.stat(os.path.join(folder, "claim.private.key")).st_mode) == 0o600
    cfg = json.load(open(os.path.join(folder, "config.json")))
    assert cfg["id"] == "" and cfg["mqtt"]["provision_template"] == "chargers"
    assert (cfg["mqtt"]["cert"], cfg["mqtt"]["key"]) == ("claim.cert.pem", "claim.private.key")
    # a config.json without the charger's id does not boot; with it, it is a claim charger's
    with pytest.raises(devconfig.ConfigError, match="id"):
        devconfig.load(os.path.join(folder, "config.json"))
    cfg["id"] = "CP042"
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f)
    assert devconfig.load(os.path.join(folder, "config.json"))["mqtt"][
        "provision_template"] == "chargers"
    # a second run changes nothing, the charger's id stays
    assert provision.provision_claim(account, "chargers", out, ROLE, ca=ca_file) == []
    assert json.load(open(os.path.join(folder, "config.json")))["id"] == "CP042"
    # a changed role is set, the certificate kept
    assert provision.provision_claim(account, "chargers", out, ROLE + "2") == [
        "template chargers role and enabled set"]
    # a claim certificate revoked is replaced
    aws.update_certificate(certificateId=cert_id, newStatus="REVOKED")
    done = provision.provision_claim(account, "chargers", out, ROLE + "2")
    assert done[0].startswith("claim certificate ") and cert_id not in done[0]


def test_claim_needs_a_role(aws, out, capsys):
    assert run("--claim", "chargers", "--out", out) == 2
    assert "--claim needs --role-arn" in capsys.readouterr().err
