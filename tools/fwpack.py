"""Build a firmware update package from the working tree, for OCPP UpdateFirmware.

    python3 -m tools.fwpack --out FILE --version VERSION [--kind image|mpy]
        [--target twin|esp32] [--image APP.bin] [--sign-key KEY.pem --sign-cert CERT.pem]

With neither --kind nor --target (--kind image --target twin) it builds what the charger of
`make sim` runs (our image, the firmware frozen into the twin): that charger installs it.
`--help` shows every default.

The package (format in lib/chargepoint/platform/update.py) is one JSON header line with the
version, kind, target, size and SHA-256 of the payload, then the payload:
  --kind image --target twin (default): the device twin built with lib/ at VERSION frozen
      in, for the simulator's simulated OTA partitions (tools/simfs/esp32.py).
  --kind image --target esp32 --image APP.bin: a whole ESP32 application image (the app
      `micropython.bin` of an OTA build, firmware/README.md, built from this tree with
      VERSION set), checked to be one (magic byte 0xE9), for our image with the firmware
      frozen in. This machine cannot build it (no ESP-IDF).
  --kind mpy: lib/ compiled to .mpy by the twin's mpy-cross (MicroPython v1.28.0), with
      chargepoint.app.VERSION set to VERSION: for a board running a stock MicroPython image
      with our code in /lib (`make deploy`, `python3 -m tools.sim --code deployed`). The
      same package serves ESP32 and twin (bytecode does not depend on the CPU); --target
      says which one it is for.
A charger given a package of another kind or target downloads and checks it, then reports
Downloaded, InstallationFailed and the security event InvalidFirmwarePackage, and keeps its
firmware. After an update, BootNotification reports firmwareVersion = VERSION.

Signed (OCPP 1.6 security whitepaper, SignedUpdateFirmware): with --sign-key and --sign-cert
the whole package file is signed (RSA: RSASSA-PKCS1-v1_5, EC P-256: ECDSA, both SHA-256),
and the signature, base64, is written to FILE.sig; what goes in the request's `firmware`
(signingCertificate, signature) is printed. `python3 -m tools.certs --dir DIR
--firmware-signing ec` makes a development manufacturer root and signing certificate.
"""
import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

from tools import deploy, twin

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KIND = "image"  # the defaults: what the charger of `make sim` runs and installs
TARGET = "twin"
VERSION_LINE = re.compile(r'^VERSION = "[^"]*"$', re.M)


class PackError(Exception):
    pass


def lib_at(version, into):
    """A copy of lib/ in `into` with chargepoint.app.VERSION = version; its path."""
    if not re.match(r"^[A-Za-z0-9._+-]{1,50}$", version):
        raise PackError("--version: 1..50 of letters, digits and . _ + - (a CiString50)")
    lib = os.path.join(into, "lib")
    shutil.copytree(os.path.join(ROOT, "lib"), lib,
                    ignore=shutil.ignore_patterns("__pycache__"))
    app = os.path.join(lib, "chargepoint", "app.py")
    with open(app) as f:
        text = f.read()
    text, n = VERSION_LINE.subn('VERSION = "%s"' % version, text)
    if n != 1:
        raise PackError("no VERSION line in lib/chargepoint/app.py")
    with open(app, "w") as f:
        f.write(text)
    return lib


def mpy_payload(lib, work):
    """Entries "<path below lib/> <size>\\n<bytes>" of the compiled firmware."""
    out = os.path.join(work, "mpy")
    deploy.compile_lib(out, src_lib=lib)
    parts = []
    for dirpath, _, files in sorted(os.walk(out)):
        for name in sorted(files):
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                data = f.read()
            rel = os.path.relpath(path, out).replace(os.sep, "/")
            parts.append(b"%s %d\n" % (rel.encode(), len(data)) + data)
    return b"".join(parts)


def package(kind, target, version, payload):
    header = {"format": 1, "kind": kind, "target": target, "version": version,
              "size": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
    return json.dumps(header, separators=(",", ":")).encode() + b"\n" + payload


def build(kind, target, version, image=None):
    if image and (kind, target) != ("image", "esp32"):
        raise PackError("--image is for --kind image --target esp32 (this is --kind %s "
                        "--target %s)" % (kind, target))
    with tempfile.TemporaryDirectory() as work:
        lib = lib_at(version, work)
        if kind == "mpy":
            payload = mpy_payload(lib, work)
        elif target == "twin":
            name = "fwimage-" + re.sub(r"[^A-Za-z0-9._-]", "_", version)
            binary = twin.build_image(lib, name)
            with open(binary, "rb") as f:
                payload = f.read()
        else:
            if not image:
                raise PackError("--kind image --target esp32 needs --image APP.bin (ESP-IDF "
                                "build of this tree, firmware/README.md)")
            with open(image, "rb") as f:
                payload = f.read()
            if payload[:1] != b"\xe9":
                raise PackError("%s is not an ESP32 application image" % image)
    return package(kind, target, version, payload)


def sign(data, key_pem):
    """base64 of the signature of `data` by the private key `key_pem` (bytes): RSA
    PKCS#1 v1.5 or ECDSA (P-256 only: what the charger checks), SHA-256."""
    import base64

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

    key = serialization.load_pem_private_key(key_pem, password=None)
    if isinstance(key, rsa.RSAPrivateKey):
        sig = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    elif isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1":
        sig = key.sign(data, ec.ECDSA(hashes.SHA256()))
    else:
        raise PackError("--sign-key: an RSA or P-256 key (the charger checks no other)")
    return base64.b64encode(sig).decode()


def main(argv=None):
    p = argparse.ArgumentParser(
        prog="python3 -m tools.fwpack", description=__doc__.split("\n")[0],
        epilog="The defaults build the package the charger of `make sim` installs.")
    p.add_argument("--out", required=True, metavar="FILE",
                   help="the package file to write (required)")
    p.add_argument("--version", required=True,
                   help="the new firmware's version, reported in BootNotification (required)")
    p.add_argument("--kind", choices=("image", "mpy"), default=KIND,
                   help="image: a whole application image, for our image with the firmware "
                   "frozen in; mpy: lib/ as .mpy files, for a stock MicroPython with our code "
                   "in /lib (default: %(default)s)")
    p.add_argument("--target", choices=("twin", "esp32"), default=TARGET,
                   help="the board: the device twin of the simulator, or an ESP32 "
                   "(default: %(default)s)")
    p.add_argument("--image", metavar="APP.bin",
                   help="the ESP32 application image, only for --kind image --target esp32 "
                   "(default: none)")
    p.add_argument("--sign-key", metavar="KEY.pem",
                   help="sign the package with this private key (RSA or P-256), the "
                   "signature to FILE.sig (default: not signed)")
    p.add_argument("--sign-cert", metavar="CERT.pem",
                   help="the signing certificate of --sign-key, for the request")
    a = p.parse_args(argv)
    if bool(a.sign_key) != bool(a.sign_cert):
        p.error("--sign-key and --sign-cert go together")
    try:
        data = build(a.kind, a.target, a.version, a.image)
        signature = cert = None
        if a.sign_key:
            with open(a.sign_key, "rb") as f:
                signature = sign(data, f.read())
            with open(a.sign_cert) as f:
                cert = f.read()
    except (PackError, OSError, subprocess.CalledProcessError, ValueError) as e:
        print("tools.fwpack: %s" % e, file=sys.stderr)
        return 2
    with open(a.out, "wb") as f:
        f.write(data)
    header = json.loads(data.split(b"\n", 1)[0])
    print("%s: %s %s for %s, %d bytes, sha256 %s" % (a.out, header["kind"], a.version,
                                                    a.target, header["size"], header["sha256"]))
    if signature is not None:
        with open(a.out + ".sig", "w") as f:
            f.write(signature + "\n")
        print("%s.sig: the signature. SignedUpdateFirmware's firmware object, with your "
              "location and retrieveDateTime:" % a.out)
        print(json.dumps({"location": "<URL of %s>" % os.path.basename(a.out),
                          "retrieveDateTime": "<now>", "signingCertificate": cert,
                          "signature": signature}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
