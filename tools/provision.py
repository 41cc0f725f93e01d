"""Provision charge points on AWS IoT Core: thing, certificate, least-privilege policy, folder.

    python3 -m tools.provision --id CP001 [--out DIR] [--ca AmazonRootCA1.pem]
    python3 -m tools.provision --csv chargers.csv [--thing-type T] [--thing-group G]
    python3 -m tools.provision --id CP001 --rotate        # new certificate, old one deactivated
    python3 -m tools.provision --csms-policy [--csms-id csms]   # prints the Central System policy
    python3 -m tools.provision --claim chargers --role-arn ROLE_ARN [--ca AmazonRootCA1.pem]

Each charger gets DIR/<id>/ with config.json (the device's format), <id>.cert.pem,
<id>.private.key (0600) and the root CA. The folder is the record of what was issued: a second
run finds its certificate attached to the thing and changes nothing. Credentials and region
come from the usual AWS sources (AWS_PROFILE, AWS_REGION, ...). Private keys are never printed.

Fleet provisioning by claim (--claim TEMPLATE): for a factory that flashes every charger with
the same claim certificate, the charger making its own key and certificate on first boot
(chargepoint.transport.claim). Made once, changed only where it differs: the provisioning
template TEMPLATE (a thing named by the charger's SerialNumber, which it sends as its id, its
certificate activated, the charger policy attached; --role-arn: the IAM role AWS IoT assumes
to do that, with the AWSIoTThingsRegistration managed policy), the claim policy (the
provisioning API of that template, nothing else: tools/policy.py) and the claim certificate
in DIR/claim-TEMPLATE/: claim.cert.pem, claim.private.key (0600), claim.json (its id) and
config.json with "provision_template" set and "id" empty: each charger's own id goes there
(a config.json without one does not boot).
"""

import argparse
import csv
import json
import os
import re
import sys

from tools import policy

DEFAULT_POLICY = "ChargePointPolicy"
CLAIM_POLICY = "ChargePointClaimPolicy"
DEFAULT_OUT = "provisioned"
CA_NAME = "AmazonRootCA1.pem"
KEEPALIVE = 300
PORT = 8883
# AWS thing names: 1..128 of these; none of them is an MQTT wildcard, `/` or a policy wildcard.
_THING_NAME = re.compile(r"^[A-Za-z0-9_:-]{1,128}$")
_TEMPLATE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,36}$")

CA_NOTE = """\
The Amazon root CA is not in this folder yet.

Put AWS's root CA here as {ca} (AmazonRootCA1.pem for the RSA chain; a bundle of
AmazonRootCA1 and AmazonRootCA3 concatenated works too), or use another file name and set
"mqtt": {{"ca": "<file name>"}} in config.json accordingly. The device refuses to boot without it.
"""

CSR_NOTE = """\
This certificate was issued from a certificate signing request: the private key stays where
the request was made and is not in this folder. Put it here as {key} (or set
"mqtt": {{"key": "<file name>"}} in config.json accordingly).
"""


class ProvisionError(Exception):
    """A mistake the operator can fix; main() prints it as one line."""


def check_id(cp_id, where=""):
    if not _THING_NAME.match(cp_id):
        raise ProvisionError("%sinvalid charger id %r: 1..128 of A-Z a-z 0-9 _ : - "
                             "(it is the AWS thing name and the MQTT client id)" % (where, cp_id))
    return cp_id


def read_csv(path):
    """Charger ids from a CSV: one per line, or the column `id` when a header names it."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except OSError as e:
        raise ProvisionError("%s: %s" % (path, e.strerror))
    column = 0
    numbered = [(n, row) for n, row in enumerate(rows, 1)
                if row and any(c.strip() for c in row) and not row[0].lstrip().startswith("#")]
    if numbered:
        header = [c.strip().lower() for c in numbered[0][1]]
        if "id" in header:
            column = header.index("id")
            numbered = numbered[1:]
    ids, seen = [], {}
    for n, row in numbered:
        where = "%s:%d: " % (path, n)
        if column >= len(row) or not row[column].strip():
            raise ProvisionError(where + "no charger id")
        cp_id = check_id(row[column].strip(), where)
        if cp_id in seen:
            raise ProvisionError("%sduplicate charger id %s (first on line %d)"
                                 % (where, cp_id, seen[cp_id]))
        seen[cp_id] = n
        ids.append(cp_id)
    if not ids:
        raise ProvisionError("%s: no charger ids" % path)
    return ids


# --- files -----------------------------------------------------------------------------------

def _read(path, mode="r"):
    try:
        with open(path, mode) as f:
            return f.read()
    except FileNotFoundError:
        return None


def _write(path, data, mode=0o644):
    """Atomically (temp file, rename); False when the file already holds exactly `data`."""
    binary = isinstance(data, bytes)
    if _read(path, "rb" if binary else "r") == data:
        if mode == 0o600:
            os.chmod(path, mode)
        return False
    tmp = path + ".tmp"
    if os.path.exists(tmp):
        os.unlink(tmp)
    # Created with its final mode: a key is never readable by others, not even for a moment.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb" if binary else "w") as f:
        os.fchmod(f.fileno(), mode)
        f.write(data)
    os.rename(tmp, path)
    return True


def _check_ca(path):
    try:
        from cryptography import x509
        with open(path, "rb") as f:
            certs = x509.load_pem_x509_certificates(f.read())
    except OSError as e:
        raise ProvisionError("--ca %s: %s" % (path, e.strerror))
    except ValueError:
        raise ProvisionError("--ca %s: not a PEM file of CA certificates" % path)
    if not certs:
        raise ProvisionError("--ca %s: no certificate in it" % path)
    with open(path, "rb") as f:
        return f.read()


def _key_matches(cert_pem, key_pem):
    """Whether the private key is the one of the certificate (a run stopped between the two
    writes of a rotation leaves them apart)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        cert_public = x509.load_pem_x509_certificate(cert_pem.encode()).public_key()
        key_public = serialization.load_pem_private_key(key_pem, password=None).public_key()
    except ValueError:
        return False
    raw = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    return cert_public.public_bytes(der, raw) == key_public.public_bytes(der, raw)


def device_config(existing, cp_id, endpoint, ca):
    """config.json: ours are id and the mqtt connection fields; anything else the operator
    added (wifi, hardware, topics) is kept."""
    cfg = dict(existing or {})
    mqtt = dict(cfg.get("mqtt") or {})
    mqtt.update({"endpoint": endpoint, "port": PORT, "ca": ca, "cert": cp_id + ".cert.pem",
                 "key": cp_id + ".private.key"})
    mqtt.setdefault("keepalive", KEEPALIVE)
    cfg["id"] = cp_id
    cfg["mqtt"] = mqtt
    return cfg


# --- AWS -------------------------------------------------------------------------------------

class Account:
    """The IoT control plane of one account and region, and what is known about them."""

    def __init__(self, iot, sts):
        self.iot = iot
        self.region = iot.meta.region_name
        identity = sts.get_caller_identity()
        self.account = identity["Account"]
        self.partition = identity["Arn"].split(":")[1]
        self._endpoint = None

    @property
    def endpoint(self):
        if self._endpoint is None:
            self._endpoint = self.iot.describe_endpoint(
                endpointType="iot:Data-ATS")["endpointAddress"]
        return self._endpoint

    def ensure_policy(self, name):
        """The shared charger policy; a new default version if the rule table changed."""
        return self._ensure_document(name, policy.charger_policy(self.region, self.account,
                                                                 self.partition))

    def _ensure_document(self, name, document):
        try:
            current = self.iot.get_policy(policyName=name)
        except self.iot.exceptions.ResourceNotFoundException:
            self.iot.create_policy(policyName=name, policyDocument=policy.dumps(document))
            return "created"
        if json.loads(current["policyDocument"]) == document:
            return None
        versions = self.iot.list_policy_versions(policyName=name)["policyVersions"]
        old = [v for v in versions if not v["isDefaultVersion"]]
        if len(versions) >= 5 and old:  # AWS keeps at most 5 versions
            oldest = min(old, key=lambda v: int(v["versionId"]))
            self.iot.delete_policy_version(policyName=name, policyVersionId=oldest["versionId"])
        self.iot.create_policy_version(policyName=name, policyDocument=policy.dumps(document),
                                       setAsDefault=True)
        return "updated"

    def ensure_claim_policy(self, name, template):
        """The claim certificate's policy; a new default version if it changed."""
        return self._ensure_document(name, policy.claim_policy(self.region, self.account,
                                                               template, self.partition))

    def ensure_template(self, name, role_arn, policy_name):
        """The fleet provisioning template, its body and role as template_body() says."""
        body = template_body(policy_name)
        try:
            current = self.iot.describe_provisioning_template(templateName=name)
        except self.iot.exceptions.ResourceNotFoundException:
            self.iot.create_provisioning_template(
                templateName=name, templateBody=json.dumps(body, sort_keys=True),
                provisioningRoleArn=role_arn, enabled=True,
                description="EV chargers: thing = SerialNumber, charger policy")
            return "created"
        done = []
        if json.loads(current["templateBody"]) != body:
            self.iot.create_provisioning_template_version(
                templateName=name, templateBody=json.dumps(body, sort_keys=True),
                setAsDefault=True)
            done.append("new version")
        if current.get("provisioningRoleArn") != role_arn or not current.get("enabled"):
            self.iot.update_provisioning_template(templateName=name,
                                                  provisioningRoleArn=role_arn, enabled=True)
            done.append("role and enabled set")
        return ", ".join(done) or None

    def ensure_thing(self, name, thing_type=None, group=None):
        done = []
        if thing_type:
            try:
                self.iot.describe_thing_type(thingTypeName=thing_type)
            except self.iot.exceptions.ResourceNotFoundException:
                self.iot.create_thing_type(thingTypeName=thing_type)
                done.append("thing type " + thing_type)
        try:
            thing = self.iot.describe_thing(thingName=name)
        except self.iot.exceptions.ResourceNotFoundException:
            kwargs = {"thingTypeName": thing_type} if thing_type else {}
            self.iot.create_thing(thingName=name, **kwargs)
            done.append("thing")
        else:
            if thing_type and thing.get("thingTypeName") != thing_type:
                self.iot.update_thing(thingName=name, thingTypeName=thing_type)
                done.append("thing type set")
        if group:
            try:
                self.iot.describe_thing_group(thingGroupName=group)
            except self.iot.exceptions.ResourceNotFoundException:
                self.iot.create_thing_group(thingGroupName=group)
                done.append("thing group " + group)
            groups = self.iot.list_thing_groups_for_thing(thingName=name)["thingGroups"]
            if group not in [g["groupName"] for g in groups]:
                self.iot.add_thing_to_thing_group(thingGroupName=group, thingName=name)
                done.append("added to " + group)
        return done

    def certificates(self, thing):
        """{certificate arn: description} of the certificates attached to the thing."""
        arns = self.iot.list_thing_principals(thingName=thing)["principals"]
        out = {}
        for arn in arns:
            if ":cert/" in arn:
                cert_id = arn.rsplit("/", 1)[1]
                out[arn] = self.iot.describe_certificate(
                    certificateId=cert_id)["certificateDescription"]
        return out

    def attach(self, thing, cert_arn, policy_name):
        attached = self.iot.list_attached_policies(target=cert_arn)["policies"]
        done = []
        if policy_name not in [p["policyName"] for p in attached]:
            self.iot.attach_policy(policyName=policy_name, target=cert_arn)
            done.append("policy attached")
        if cert_arn not in self.iot.list_thing_principals(thingName=thing)["principals"]:
            self.iot.attach_thing_principal(thingName=thing, principal=cert_arn)
            done.append("certificate attached")
        return done

    def retire(self, thing, cert_arn, description):
        """Deactivate a certificate, and take it off the thing and its policies."""
        if description["status"] == "ACTIVE":
            self.iot.update_certificate(certificateId=description["certificateId"],
                                        newStatus="INACTIVE")
        for p in self.iot.list_attached_policies(target=cert_arn)["policies"]:
            self.iot.detach_policy(policyName=p["policyName"], target=cert_arn)
        self.iot.detach_thing_principal(thingName=thing, principal=cert_arn)


def _same_pem(a, b):
    return a is not None and b is not None and a.strip() == b.strip()


def provision(account, cp_id, out, policy_name=DEFAULT_POLICY, ca=None, csr=None,
              rotate=False, thing_type=None, thing_group=None):
    """Make one charger ready; returns the list of what was changed (empty: nothing)."""
    folder = os.path.join(out, cp_id)
    cert_path = os.path.join(folder, cp_id + ".cert.pem")
    key_path = os.path.join(folder, cp_id + ".private.key")
    done = account.ensure_thing(cp_id, thing_type, thing_group)
    attached = account.certificates(cp_id)
    local = _read(cert_path)
    current = next((arn for arn, d in attached.items()
                    if _same_pem(d["certificatePem"], local)), None)

    if current is None and local is not None and not rotate:
        raise ProvisionError("%s: %s is not a certificate of thing %s: pass --rotate to issue "
                             "a new one" % (cp_id, cert_path, cp_id))
    if current is None and attached and not rotate:
        raise ProvisionError("%s: thing already has certificate %s but %s has none of it: "
                             "pass --rotate to issue a new one (the old one is deactivated)"
                             % (cp_id, next(iter(attached)).rsplit("/", 1)[1], folder))
    if current is not None and attached[current]["status"] != "ACTIVE" and not rotate:
        raise ProvisionError("%s: certificate %s is %s: pass --rotate to issue a new one"
                             % (cp_id, attached[current]["certificateId"],
                                attached[current]["status"]))

    os.makedirs(folder, exist_ok=True)
    if current is None or rotate:
        if csr is not None:
            made = account.iot.create_certificate_from_csr(certificateSigningRequest=csr,
                                                           setAsActive=True)
        else:
            made = account.iot.create_keys_and_certificate(setAsActive=True)
        new = made["certificateArn"]
        done += account.attach(cp_id, new, policy_name)
        # The key goes to disk before anything refers to it; it is never printed.
        if csr is None:
            _write(key_path, made["keyPair"]["PrivateKey"], 0o600)
        _write(cert_path, made["certificatePem"])
        done.append("certificate %s issued" % made["certificateId"])
        for arn, description in attached.items():
            account.retire(cp_id, arn, description)
            done.append("certificate %s deactivated and detached" % description["certificateId"])
        current = new
    else:
        done += account.attach(cp_id, current, policy_name)
        if os.path.exists(key_path):
            os.chmod(key_path, 0o600)
            if not _key_matches(local, _read(key_path, "rb")):
                raise ProvisionError("%s: %s does not belong to %s: pass --rotate to issue a "
                                     "new certificate" % (cp_id, key_path, cert_path))

    ca_name = os.path.basename(ca) if ca else CA_NAME
    if ca:
        if _write(os.path.join(folder, ca_name), _check_ca(ca)):
            done.append("root CA copied")
    elif not os.path.exists(os.path.join(folder, ca_name)):
        if _write(os.path.join(folder, "README.txt"), CA_NOTE.format(ca=ca_name)):
            done.append("README.txt: put %s there" % ca_name)
    if csr is not None and not os.path.exists(key_path):
        _write(os.path.join(folder, "README-key.txt"), CSR_NOTE.format(key=cp_id + ".private.key"))

    config_path = os.path.join(folder, "config.json")
    existing = _read(config_path)
    try:
        existing = json.loads(existing) if existing is not None else None
    except ValueError:
        raise ProvisionError("%s: not valid JSON: fix or remove it" % config_path)
    cfg = device_config(existing, cp_id, account.endpoint, ca_name)
    if cfg != existing and _write(config_path, json.dumps(cfg, indent=2, sort_keys=True) + "\n"):
        done.append("config.json written")
    return done


def template_body(policy_name):
    """The provisioning template: the thing named by the SerialNumber the charger sends (its
    id), the certificate made from its request activated, the charger policy attached."""
    return {
        "Parameters": {
            "SerialNumber": {"Type": "String"},
            "AWS::IoT::Certificate::Id": {"Type": "String"},
        },
        "Resources": {
            "thing": {"Type": "AWS::IoT::Thing",
                      "Properties": {"ThingName": {"Ref": "SerialNumber"},
                                     "AttributePayload": {}}},
            "certificate": {"Type": "AWS::IoT::Certificate",
                            "Properties": {"CertificateId": {"Ref": "AWS::IoT::Certificate::Id"},
                                           "Status": "ACTIVE"}},
            "policy": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyName": policy_name}},
        },
    }


def provision_claim(account, template, out, role_arn, policy_name=DEFAULT_POLICY,
                    claim_policy=CLAIM_POLICY, ca=None):
    """Make fleet provisioning by claim ready; returns the list of what was changed."""
    if not _TEMPLATE_NAME.match(template):
        raise ProvisionError("--claim %r: a template name is 1..36 of A-Z a-z 0-9 _ -"
                             % template)
    done = []
    for what, changed in (("policy " + policy_name, account.ensure_policy(policy_name)),
                          ("claim policy " + claim_policy,
                           account.ensure_claim_policy(claim_policy, template)),
                          ("template " + template,
                           account.ensure_template(template, role_arn, policy_name))):
        if changed:
            done.append("%s %s" % (what, changed))
    folder = os.path.join(out, "claim-" + template)
    os.makedirs(folder, exist_ok=True)
    record_path = os.path.join(folder, "claim.json")
    record = json.loads(_read(record_path) or "{}")
    cert_id = record.get("certificateId")
    status = None
    if cert_id:
        try:
            status = account.iot.describe_certificate(
                certificateId=cert_id)["certificateDescription"]["status"]
        except account.iot.exceptions.ResourceNotFoundException:
            status = None
    if status != "ACTIVE":
        made = account.iot.create_keys_and_certificate(setAsActive=True)
        _write(os.path.join(folder, "claim.private.key"), made["keyPair"]["PrivateKey"], 0o600)
        _write(os.path.join(folder, "claim.cert.pem"), made["certificatePem"])
        cert_id = made["certificateId"]
        _write(record_path, json.dumps({"certificateId": cert_id,
                                        "certificateArn": made["certificateArn"]}, indent=2))
        done.append("claim certificate %s issued" % cert_id)
    arn = "arn:%s:iot:%s:%s:cert/%s" % (account.partition, account.region, account.account,
                                        cert_id)
    if claim_policy not in [p["policyName"] for p in
                            account.iot.list_attached_policies(target=arn)["policies"]]:
        account.iot.attach_policy(policyName=claim_policy, target=arn)
        done.append("claim policy attached")
    ca_name = os.path.basename(ca) if ca else CA_NAME
    if ca and _write(os.path.join(folder, ca_name), _check_ca(ca)):
        done.append("root CA copied")
    config_path = os.path.join(folder, "config.json")
    existing = json.loads(_read(config_path) or "{}")
    cfg = device_config(existing, "", account.endpoint, ca_name)
    cfg["id"] = existing.get("id", "")
    cfg["mqtt"].update({"cert": "claim.cert.pem", "key": "claim.private.key",
                        "provision_template": template})
    if cfg != existing and _write(config_path, json.dumps(cfg, indent=2, sort_keys=True) + "\n"):
        done.append("config.json written (each charger's own \"id\" goes there)")
    return done


# --- command line ----------------------------------------------------------------------------

def _clients(region):
    import boto3
    # botocore reads AWS_DEFAULT_REGION and the profile; AWS_REGION is what most other tools read.
    session = boto3.Session(region_name=region or os.environ.get("AWS_REGION") or None)
    if session.region_name is None:
        raise ProvisionError("no AWS region: pass --region, or set AWS_REGION or a profile's "
                             "region")
    return session.client("iot"), session.client("sts")


def _aws_error(e):
    """One line for botocore's exceptions, without importing botocore at module level."""
    response = getattr(e, "response", None)
    if response and "Error" in response:
        err = response["Error"]
        return "AWS %s: %s" % (err.get("Code", "?"), err.get("Message", ""))
    name = type(e).__name__
    if name in ("NoCredentialsError", "PartialCredentialsError"):
        return "no AWS credentials: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
    return "%s: %s" % (name, " ".join(str(e).split()))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", help="charger id (= AWS thing name = MQTT client id)")
    which.add_argument("--csv", metavar="FILE", help="charger ids, one a line or a column 'id'")
    which.add_argument("--csms-policy", action="store_true",
                       help="print the Central System's IoT policy (JSON) and stop")
    which.add_argument("--claim", metavar="TEMPLATE",
                       help="fleet provisioning by claim: the template, the claim policy and "
                            "the claim certificate (needs --role-arn)")
    parser.add_argument("--out", default=DEFAULT_OUT, help="parent folder of the per-charger "
                        "folders (default %(default)s)")
    parser.add_argument("--ca", metavar="FILE", help="Amazon root CA PEM to put beside the keys")
    parser.add_argument("--csr", metavar="FILE", help="certificate signing request (PEM): the "
                        "private key stays with whoever made it")
    parser.add_argument("--rotate", action="store_true",
                        help="issue a new certificate; deactivate and detach the old one")
    parser.add_argument("--thing-type")
    parser.add_argument("--thing-group")
    parser.add_argument("--policy-name", default=DEFAULT_POLICY)
    parser.add_argument("--csms-id", default="csms", help="the Central System's MQTT client id")
    parser.add_argument("--region", help="AWS region (default: from the AWS configuration)")
    parser.add_argument("--account", help="with --csms-policy: account id, to print without "
                        "asking AWS")
    parser.add_argument("--role-arn", help="with --claim: the IAM role AWS IoT assumes to "
                        "register things (AWSIoTThingsRegistration)")
    parser.add_argument("--claim-policy-name", default=CLAIM_POLICY)
    args = parser.parse_args(argv)

    cp_id = None
    try:
        if args.csms_policy:
            if args.account and args.region:
                region, account, partition = args.region, args.account, "aws"
            else:
                iot, sts = _clients(args.region)
                acct = Account(iot, sts)
                region, account, partition = acct.region, acct.account, acct.partition
            print(policy.dumps(policy.csms_policy(region, account, args.csms_id, partition)))
            return 0
        if args.claim:
            if not args.role_arn:
                raise ProvisionError("--claim needs --role-arn: the IAM role AWS IoT assumes "
                                     "to register things")
            if args.ca:
                _check_ca(args.ca)
            account = Account(*_clients(args.region))
            done = provision_claim(account, args.claim, args.out, args.role_arn,
                                   args.policy_name, args.claim_policy_name, args.ca)
            print("claim %s: %s" % (args.claim, "; ".join(done) if done else "unchanged"))
            return 0
        ids = [check_id(args.id)] if args.id else read_csv(args.csv)
        csr = None
        if args.csr:
            if len(ids) != 1:
                raise ProvisionError("--csr: one request is one certificate: use it with --id")
            csr = _read(args.csr)
            if csr is None or "-----BEGIN CERTIFICATE REQUEST-----" not in csr:
                raise ProvisionError("--csr %s: no PEM certificate request there" % args.csr)
        if args.ca:
            _check_ca(args.ca)
        account = Account(*_clients(args.region))
        changed = account.ensure_policy(args.policy_name)
        if changed:
            print("policy %s %s" % (args.policy_name, changed))
        for cp_id in ids:
            done = provision(account, cp_id, args.out, args.policy_name, args.ca, csr,
                             args.rotate, args.thing_type, args.thing_group)
            print("%s: %s" % (cp_id, "; ".join(done) if done else "unchanged"))
    except ProvisionError as e:
        print("provision: %s" % e, file=sys.stderr)
        return 2
    except Exception as e:  # botocore's errors: one line, never a trace
        if type(e).__module__.split(".")[0] not in ("botocore", "boto3"):
            raise
        where = cp_id + ": " if cp_id else ""
        print("provision: %s%s" % (where, _aws_error(e)), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
