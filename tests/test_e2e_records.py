"""End to end, the contract for tests outside the repository (issue: nothing lost, nothing
stuck): the simulator stopped, the firmware's records under DIR/fs/data damaged (truncated,
bits flipped, garbage, emptied, deleted), the simulator started again: the charger boots, says
what it found (a security event per record, the event log) and carries on."""
import asyncio
import os

from test_e2e import T, online, run, start_charging  # noqa: F401  (its fixtures too)
from test_e2e import world  # noqa: F401

DAMAGED = "StoredRecordDamaged"


def damage(path, how):
    with open(path, "rb") as f:
        data = f.read()
    if how == "truncated":
        data = data[:len(data) // 2]
    elif how == "flipped":
        i = len(data) - 3
        data = data[:i] + bytes([data[i] ^ 0x21]) + data[i + 1:]
    elif how == "garbage":
        data = os.urandom(300)
    elif how == "empty":
        data = b""
    with open(path, "wb") as f:
        f.write(data)


def test_damaged_records_at_boot_are_set_aside_reported_and_the_session_still_ends(world):
    _, _, make_sim, make_csms = world

    async def scenario():
        async with make_csms() as cs:
            sim = make_sim()
            cp = await online(sim, cs)
            await start_charging(sim, cs, cp, 32.0)
            await sim.until(lambda s: s["connectors"]["1"]["energy_wh"] >= 3)
            await cs.change_configuration("CP001", "HeartbeatInterval", "600")
            sim.power_cut()
            data = os.path.join(str(sim.state), "fs", "data")
            # tx1 has its copy from before (written at the start, again with its id): the
            # session still ends with PowerLoss; the others go back to their defaults
            plan = {"tx1": "flipped", "config": "truncated", "boot": "garbage",
                    "txids": "empty"}
            for name, how in plan.items():
                assert os.path.exists(os.path.join(data, name)), sorted(os.listdir(data))
                damage(os.path.join(data, name), how)
            await sim.start()
            s = await sim.until(lambda s: s["online"])
            assert s["restarts"] == 0 and not s["connectors"]["1"]["relay"]
            await cs.wait_for(lambda: cp.security_events.count(DAMAGED) == len(plan), T)
            tx = await cs.wait_for(lambda: [t for t in cp.transactions.values() if t.stopped], T)
            assert tx[0].reason == "PowerLoss" and len(cp.calls("StopTransaction")) == 1
            names = sorted(os.listdir(data))
            assert all(name + ".bad" in names for name in plan), names
            conf = await cs.get_configuration("CP001", ["HeartbeatInterval"])
            assert conf["configurationKey"][0]["value"] != "600"  # its default again
            assert sim.healthy(), sim.bad_log()
            await asyncio.sleep(0)
    run(scenario())


def test_any_record_filled_with_garbage_or_deleted_boots_and_goes_online(world):
    _, _, make_sim, make_csms = world

    async def scenario():
        async with make_csms() as cs:
            sim = make_sim()
            await online(sim, cs)
            sim.power_cut()
            data = os.path.join(str(sim.state), "fs", "data")
            for i, name in enumerate(sorted(os.listdir(data))):
                if name.startswith("log"):
                    continue
                if i % 2:
                    os.remove(os.path.join(data, name))
                else:
                    damage(os.path.join(data, name), "garbage")
            await sim.start()
            s = await sim.until(lambda s: s["online"])
            assert s["restarts"] == 0, sim.bad_log()
            assert sim.healthy(), sim.bad_log()
    run(scenario())
