"""Local PKI for the AWS IoT Core stand-in and the WebSocket Central System: a CA, server
certificates (the broker's, the Central System's for wss://) and one client certificate per
identity (a charger's CN is its charge point id: the MQTT thing name, the profile-3 identity).

For signed firmware (development only: a manufacturer keeps its keys elsewhere),
`--firmware-signing ec|rsa` makes a manufacturer root (mfr-root.pem/.key, for
InstallCertificate as ManufacturerRootCertificate) and a firmware signing certificate it
issued (fw-signing.pem/.key, for `python3 -m tools.fwpack --sign-key --sign-cert`)."""

import argparse
import datetime
import ipaddress
import os
import sys
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_NAME = "ca"
BROKER_NAME = "broker"
CSMS_CN = "csms"
CSMS_SERVER_NAME = "csms-server"  # the WebSocket Central System's wss:// certificate
CLAIM_CN = "claim"  # fleet provisioning's shared claim certificate (tools/fleetprov.py)
PROVISIONER_CN = "iot-provisioning"  # the stand-in's provisioning service
LOCAL_HOSTS = ("localhost", "127.0.0.1")
# Validity starts a day back so a device whose clock is slightly behind still accepts the chain.
_BACKDATE = datetime.timedelta(days=1)
_LIFETIME = datetime.timedelta(days=3650)


@dataclass(frozen=True)
class Pki:
    """Paths of one PKI folder; client(cn) issues a certificate on demand."""

    dir: str
    ca: str
    ca_key: str
    broker_cert: str
    broker_key: str

    def client(self, cn):
        """(cert, key) for identity `cn`, issued by this CA if not there yet."""
        return issue(self.dir, cn, client=True)

    def server(self, name=CSMS_SERVER_NAME, hosts=LOCAL_HOSTS):
        """(cert, key) of a server certificate for `hosts` (DNS names or IP addresses, the
        first its CN), files <name>.pem/.key, issued by this CA if not there yet. The default:
        the WebSocket Central System's on loopback; another name and host gives one a charger
        must refuse for a wrong host name."""
        return issue(self.dir, hosts[0], client=False, name=name, hosts=hosts)


def _paths(directory, name):
    return os.path.join(directory, name + ".pem"), os.path.join(directory, name + ".key")


def _write_atomic(path, data, mode):
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _save(cert_path, key_path, cert, key):
    # Key first: a certificate without its key would be taken as a finished pair.
    _write_atomic(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        0o600,
    )
    _write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _builder(subject, issuer, public_key, valid=None):
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = valid or (now - _BACKDATE, now + _LIFETIME)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def make_ca(directory, cn="Local IoT stand-in CA"):
    """Create ca.pem/ca.key in `directory` unless present; return their paths."""
    os.makedirs(directory, exist_ok=True)
    cert_path, key_path = _paths(directory, CA_NAME)
    if os.path.exists(cert_path) and os.path.exists(key_path):
        return cert_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _builder(_name(cn), _name(cn), key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    _save(cert_path, key_path, cert, key)
    return cert_path, key_path


def _load_ca(directory):
    cert_path, key_path = make_ca(directory)
    with open(cert_path, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    with open(key_path, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    return cert, key


def issue(directory, cn, client=True, name=None, hosts=LOCAL_HOSTS):
    """Issue a leaf certificate signed by the CA in `directory`; reuse it if already there.

    client=True: clientAuth, files <cn>.pem/<cn>.key.
    client=False: serverAuth for `hosts` (DNS names or IP addresses), files <name or cn>.pem/.key.
    """
    cert_path, key_path = _paths(directory, name or cn)
    if os.path.exists(cert_path) and os.path.exists(key_path):
        return cert_path, key_path
    ca_cert, ca_key = _load_ca(directory)
    key = ec.generate_private_key(ec.SECP256R1())
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    builder = (
        _builder(_name(cn), ca_cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if not client:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_host(h) for h in hosts]),
            critical=False,
        )
    _save(cert_path, key_path, builder.sign(ca_key, hashes.SHA256()), key)
    return cert_path, key_path


def sign_request(directory, csr_pem, days=365):
    """The PEM certificate the CA in `directory` issues for a PKCS#10 request (a charger's
    SignCertificate): its subject and key, clientAuth, `days` long. ValueError when the
    request's signature does not check out or its key is not P-256/RSA."""
    csr = x509.load_pem_x509_csr(csr_pem.encode() if isinstance(csr_pem, str) else csr_pem)
    if not csr.is_signature_valid:
        raise ValueError("the request's signature does not check out")
    ca_cert, ca_key = _load_ca(directory)
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        _builder(csr.subject, ca_cert.subject, csr.public_key(),
                 (now - _BACKDATE, now + datetime.timedelta(days=days)))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def signer_for(directory, days=365):
    """A Central System's `signer` (tools.csms): requests signed by the CA in `directory`."""
    def sign(charger_id, csr_pem):
        return sign_request(directory, csr_pem, days)
    return sign


def _host(text):
    try:
        return x509.IPAddress(ipaddress.ip_address(text))
    except ValueError:
        return x509.DNSName(text)


MFR_ROOT_NAME = "mfr-root"
SIGNER_NAME = "fw-signing"


def _new_key(kind):
    if kind == "rsa":
        return rsa.generate_private_key(65537, 3072)
    return ec.generate_private_key(ec.SECP256R1())


def firmware_signing(directory, kind="ec", root=None, names=(MFR_ROOT_NAME, SIGNER_NAME),
                     valid=None, root_valid=None):
    """A firmware signing certificate and key, <names[1]>.pem/.key in `directory`, issued by
    the manufacturer root <names[0]>.pem/.key there (made first unless present, or `root`:
    (cert path, key path) of another). `kind`: "ec" (P-256, ECDSA) or "rsa" (3072 bits,
    PKCS#1 v1.5), both with SHA-256; `valid`, `root_valid`: (not before, not after) of the
    signing certificate and of a new root, datetimes (default from a day ago for ten years).
    Returns (root cert path,
    signing cert path, signing key path); an existing signing pair is kept."""
    os.makedirs(directory, exist_ok=True)
    if root is None:
        root = _paths(directory, names[0])
        if not (os.path.exists(root[0]) and os.path.exists(root[1])):
            key = _new_key(kind)
            name = _name("Development firmware root (%s)" % kind.upper())
            cert = (_builder(name, name, key.public_key(), root_valid)
                    .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                    .sign(key, hashes.SHA256()))
            _save(root[0], root[1], cert, key)
    cert_path, key_path = _paths(directory, names[1])
    if os.path.exists(cert_path) and os.path.exists(key_path):
        return root[0], cert_path, key_path
    with open(root[0], "rb") as f:
        root_cert = x509.load_pem_x509_certificate(f.read())
    with open(root[1], "rb") as f:
        root_key = serialization.load_pem_private_key(f.read(), password=None)
    key = _new_key(kind)
    cert = (_builder(_name("Development firmware signing"), root_cert.subject, key.public_key(),
                     valid)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(root_key, hashes.SHA256()))
    _save(cert_path, key_path, cert, key)
    return root[0], cert_path, key_path


def ensure_charger(directory, charge_point_id):
    """Client certificate whose CN is the charge point id (the AWS thing name)."""
    return issue(directory, charge_point_id, client=True)


def ensure_pki(directory, chargers=(), csms=CSMS_CN):
    """CA, broker certificate, one certificate per charger and one for the Central System.

    A different `directory` gives an unrelated CA, which the broker of this one must refuse.
    """
    ca, ca_key = make_ca(directory)
    broker_cert, broker_key = issue(directory, LOCAL_HOSTS[0], client=False, name=BROKER_NAME)
    for charge_point_id in chargers:
        ensure_charger(directory, charge_point_id)
    if csms:
        issue(directory, csms, client=True)
    return Pki(directory, ca, ca_key, broker_cert, broker_key)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", required=True, help="folder for the PEM files")
    parser.add_argument("--charger", action="append", default=[], metavar="ID",
                        help="charge point id to issue a client certificate for (repeatable)")
    parser.add_argument("--csms", default=CSMS_CN, help="CN of the Central System certificate")
    parser.add_argument("--server", action="append", default=[], metavar="NAME=HOST[,HOST...]",
                        help="a server certificate NAME.pem/NAME.key for those DNS names or IP "
                             "addresses (repeatable), e.g. %s=%s for the WebSocket Central "
                             "System's wss://" % (CSMS_SERVER_NAME, ",".join(LOCAL_HOSTS)))
    parser.add_argument("--firmware-signing", choices=("ec", "rsa"), metavar="ec|rsa",
                        help="also a manufacturer root (%s.pem) and a firmware signing "
                        "certificate it issued (%s.pem/.key), P-256 or RSA-3072"
                        % (MFR_ROOT_NAME, SIGNER_NAME))
    args = parser.parse_args(argv)
    servers = []
    for spec in args.server:
        name, _, hosts = spec.partition("=")
        hosts = tuple(h for h in hosts.split(",") if h)
        if not name or "/" in name or not hosts:
            parser.error("--server must be NAME=HOST[,HOST...], got %r" % spec)
        servers.append((name, hosts))
    pki = ensure_pki(args.dir, args.charger, args.csms)
    for name, hosts in servers:
        pki.server(name, hosts)
    if args.firmware_signing:
        firmware_signing(pki.dir, args.firmware_signing)
    for path in sorted(os.listdir(pki.dir)):
        if path.endswith((".pem", ".key")):
            print(os.path.join(pki.dir, path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
