"""End to end (issue: nothing stuck): a firmware that cannot start, again and again, ends in
safe mode instead of rebooting for ever; a Reset from the Central System leaves it. The
damage: one of the firmware's own .mpy files on the flash with its header broken (the
deployed placement, as `make deploy` puts it), so the normal start raises at import every
time ("ValueError: incompatible .mpy file"). (One cut short instead makes MicroPython 1.28's
import loop for ever: only a watchdog gets a board out of that, and its reset counts as a
failed boot as well.)"""
import os
import shutil

from test_e2e import HEAP, T, Sim, online, run
from test_e2e import world  # noqa: F401  (the fixture)

MODULE = os.path.join("fs", "lib", "chargepoint", "model", "reservation.mpy")


def test_boots_that_fail_end_in_safe_mode_and_a_reset_leaves_it(world, tmp_path):
    broker, pki, _, make_csms = world
    # (not the fixture's simulator: its log is to show the tracebacks of the failed boots)
    sim = Sim(broker, pki, tmp_path / "state", code="deployed", heap=HEAP["deployed"])

    async def scenario():
        async with make_csms() as cs:
            cp = await online(sim, cs)
            path = os.path.join(str(sim.state), MODULE)
            shutil.copyfile(path, str(tmp_path / "good.mpy"))
            with open(path, "r+b") as f:
                f.write(b"X")  # its header's first byte
            sim.power_cut()
            await sim.start()
            # the boots raise at import, each counted (the power-on one starts the count),
            # until one starts in safe mode: the sixth
            s = await sim.until(lambda s: s["safe_mode"] and s["online"], 60, running=False)
            assert s["restarts"] == 5 and not s["connectors"]["1"]["relay"]
            faulted = await cs.wait_for(lambda: [
                p for p in cp.calls("StatusNotification")
                if p["status"] == "Faulted" and p.get("info", "").startswith("5 boots failed")],
                T)
            assert faulted[0]["errorCode"] == "InternalError"
            await sim.ask(cmd="rfid", uid="04A1B2C3D4E5F6")
            await sim.ask(cmd="ev", connector=1, state="C")
            s = await sim.until(lambda s: s["connectors"]["1"]["pilot_state"] == "C")
            assert not s["connectors"]["1"]["relay"] and not cp.calls("StartTransaction")
            conf = await cs.get_configuration("CP001", ["HeartbeatInterval"])
            assert conf["configurationKey"]  # reachable: it can be looked at and repaired
            # repaired (an UpdateFirmware would bring the file back), then a Reset
            shutil.copyfile(str(tmp_path / "good.mpy"), path)
            assert (await cs.reset("CP001", "Hard"))["status"] == "Accepted"
            s = await sim.until(lambda s: s["online"] and not s["safe_mode"], 60, running=False)
            assert s["firmware"] == "running"
            assert "ValueError" in sim.bad_log() or "Error" in sim.bad_log()
    try:
        run(scenario())
    finally:
        sim.stop()
