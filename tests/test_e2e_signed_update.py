"""Signed firmware updates end to end on the twin (OCPP 1.6 security whitepaper,
SignedUpdateFirmware; issue 21): a manufacturer root installed over OCPP, packages signed by
tools.fwpack --sign-key/--sign-cert with development certificates of tools.certs, served over
HTTP, on each code placement. A package altered after signing (its own SHA-256 made to fit),
a signature by another key, a signing certificate of another root of the same name and an
expired one are each refused with their status and security event while the old firmware
runs on; then the signed package installs and the new firmware reports Installed."""
import datetime
import functools
import http.server
import json
import threading

import pytest
from ocpp.exceptions import SecurityError

from test_e2e import T, online, run, world  # noqa: F401  (fixture)
from test_e2e_update import NEW, now
from tools import certs, fwpack

pytestmark = pytest.mark.usefixtures("twins")
UTC = datetime.timezone.utc
EXPIRED = (datetime.datetime(2020, 1, 1, tzinfo=UTC), datetime.datetime(2021, 1, 1, tzinfo=UTC))


def _read(path):
    with open(path) as f:
        return f.read()


@pytest.fixture(scope="module")
def signed(tmp_path_factory):
    """The manufacturer root, the signing certificates, and packages served over HTTP with
    the signatures the requests carry: {"url", "root", "cert", "expired", "forged",
    "<kind>": signature, "<kind>-altered": ..., "<kind>-other-key": ...}."""
    pki = str(tmp_path_factory.mktemp("fwpki"))
    root, cert, key = certs.firmware_signing(pki, "ec")
    _, expired, expired_key = certs.firmware_signing(pki, "ec", names=(certs.MFR_ROOT_NAME,
                                                                       "expired"), valid=EXPIRED)
    stranger = str(tmp_path_factory.mktemp("stranger"))  # a root of the same name, another key
    _, forged, forged_key = certs.firmware_signing(stranger, "ec")
    _, _, rsa_key = certs.firmware_signing(str(tmp_path_factory.mktemp("rsa")), "rsa")
    folder = tmp_path_factory.mktemp("www")
    out = {"root": _read(root), "cert": _read(cert), "expired": _read(expired),
           "forged": _read(forged)}
    # the image as README's command makes it: fwpack's defaults, signed
    image = folder / "image.cpfw"
    assert fwpack.main(["--out", str(image), "--version", NEW, "--sign-key", key,
                        "--sign-cert", cert]) == 0
    files = {"image": image.read_bytes(), "mpy": fwpack.build("mpy", "twin", NEW)}
    (folder / "mpy.cpfw").write_bytes(files["mpy"])
    out["image"] = (folder / "image.cpfw.sig").read_text().strip()
    out["mpy"] = fwpack.sign(files["mpy"], open(key, "rb").read())
    for kind, data in files.items():
        header, payload = data.split(b"\n", 1)
        # the same payload under another version: its SHA-256 checks out, its signature not
        altered = fwpack.package(kind, "twin", "6.6.6", payload)
        assert json.loads(header)["sha256"] == json.loads(altered.split(b"\n")[0])["sha256"]
        (folder / (kind + "-altered.cpfw")).write_bytes(altered)
        out[kind + "-altered"] = out[kind]
        out[kind + "-other-key"] = fwpack.sign(data, open(rsa_key, "rb").read())
        out[kind + "-expired"] = fwpack.sign(data, open(expired_key, "rb").read())
        out[kind + "-forged"] = fwpack.sign(data, open(forged_key, "rb").read())
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    out["url"] = "http://127.0.0.1:%d/" % server.server_port
    yield out
    server.shutdown()


def signed_statuses(cp, request_id):
    found = []
    for f in cp.frames:
        msg = json.loads(f.text)
        if f.direction == "in" and msg[0] == 2 and msg[2] == "SignedFirmwareStatusNotification":
            if msg[3].get("requestId") == request_id:
                found.append(msg[3]["status"])
    return found


@pytest.mark.parametrize("code", ["frozen", "deployed"])
def test_signed_update_refuses_what_does_not_check_out_then_installs(world, signed, code):
    _, _, make_sim, make_csms = world
    kind = {"frozen": "image", "deployed": "mpy"}[code]
    url = signed["url"] + kind

    async def update(cs, cp, request_id, file, cert, signature, answer, done):
        got = await cs.signed_update_firmware("CP001", request_id, file, now(), cert,
                                              signature)
        assert got == {"status": answer}
        if done is None:
            return []
        await cs.wait_for(lambda: signed_statuses(cp, request_id)[-1:] == [done], 90)
        return signed_statuses(cp, request_id)

    async def scenario():
        async with make_csms() as cs:
            sim = make_sim(code=code)
            cp = await online(sim, cs)
            assert await cs.install_certificate("CP001", signed["root"],
                                                "ManufacturerRootCertificate") == {
                "status": "Accepted"}
            with pytest.raises(SecurityError):  # SignedFirmwareOnly, now that a root is in
                await cs.update_firmware("CP001", url + ".cpfw", now())
            # an expired signing certificate: refused at once
            await update(cs, cp, 1, url + ".cpfw", signed["expired"], signed[kind + "-expired"],
                         "InvalidCertificate", None)
            await cs.wait_for(
                lambda: "InvalidFirmwareSigningCertificate" in cp.security_events, T)
            # issued under the root's name by another key: found when its signature is checked
            seen = await update(cs, cp, 2, url + ".cpfw", signed["forged"],
                                signed[kind + "-forged"], "Accepted", "InvalidSignature")
            assert seen == ["InvalidSignature"]
            assert cp.security_events.count("InvalidFirmwareSigningCertificate") == 2
            # a signature by another key; a package altered after signing
            for request_id, file, signature in ((3, url + ".cpfw", signed[kind + "-other-key"]),
                                                (4, url + "-altered.cpfw",
                                                 signed[kind + "-altered"])):
                seen = await update(cs, cp, request_id, file, signed["cert"], signature,
                                    "Accepted", "InvalidSignature")
                assert seen == ["Downloading", "Downloaded", "InvalidSignature"]
            await cs.wait_for(lambda: cp.security_events.count("InvalidFirmwareSignature") == 2,
                              T)
            s = await sim.ask(cmd="status")
            assert s["online"] and s["boots"] == 1  # the old firmware runs on
            assert [b["firmwareVersion"] for b in cp.boots] == ["0.1.0"]
            # signed as it is: installed
            seen = await update(cs, cp, 5, url + ".cpfw", signed["cert"], signed[kind],
                                "Accepted", "Installed")
            assert seen == ["Downloading", "Downloaded", "SignatureVerified", "Installing",
                            "InstallRebooting", "Installed"]
            assert cp.boots[-1]["firmwareVersion"] == NEW
            s = await sim.until(lambda s: s["online"])
            assert s["boots"] == 2
    run(scenario())
