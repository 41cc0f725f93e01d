"""End to end on the twin at an ESP32's heap (frozen placement): the charger makes its key and
request, the development Central System has the local CA sign it, and after a reset the charger
connects to Mosquitto with the new certificate (issue 21)."""
import os

import pytest

from test_e2e import T, online, run, world  # noqa: F401  (fixture)
from tools import certs

pytestmark = pytest.mark.usefixtures("twins")


def test_charger_gets_its_request_signed_and_reconnects_with_the_new_certificate(
        world, tmp_path):  # noqa: F811
    _, pki, make_sim, make_csms = world

    async def scenario():
        async with make_csms(signer=certs.signer_for(pki.dir)) as cs:
            sim = make_sim()
            cp = await online(sim, cs)
            answer = await cs.extended_trigger_message("CP001", "SignChargePointCertificate")
            assert answer == {"status": "Accepted"}
            await cs.wait_for(lambda: cp.certificates_signed, T)
            assert cp.certificates_signed == ["Accepted"]
            assert "BEGIN CERTIFICATE REQUEST" in cp.csrs[0]
            fs = os.path.join(sim.state, "fs")
            await sim.until(lambda s: os.path.exists(os.path.join(fs, "data", "identity")))
            s = await sim.ask(cmd="status")
            print("heap after a key, a request and a chain, frozen at 110000: peak %d B live, "
                  "%d B free" % (s["heap_peak"], s["heap_free"]))
            # the provisioned pair is no longer any good: only the new one can get through
            cert, key = certs.issue(str(tmp_path / "other"), "CP001")
            for src, name in ((cert, "cert.pem"), (key, "key.pem")):
                with open(src, "rb") as f, open(os.path.join(fs, name), "wb") as out:
                    out.write(f.read())
            boots = len(cp.boots)
            assert (await cs.reset("CP001", "Hard")) == {"status": "Accepted"}
            await cs.wait_for(lambda: len(cp.boots) > boots, T)
            s = await sim.until(lambda s: s["online"])
            assert s["boots"] >= 2
            for frame in cp.frames:  # the key never went out
                assert "PRIVATE" not in frame.text
    run(scenario())
