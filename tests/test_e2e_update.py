"""Firmware updates end to end on the twin (issue 11): UpdateFirmware from the Central
System, a package built by tools.fwpack served over HTTP, installed on each code placement
(the image into the simulated OTA partition for our frozen image, from README's command with
fwpack's defaults; the .mpy files into /lib on a stock one), rolled back by itself when the
new firmware does not come up, and never installed when altered or made for the other
placement (issue 15)."""
import datetime
import functools
import http.server
import json
import os
import shutil
import threading

import pytest

from test_e2e import HEAP, T, online, run, world  # noqa: F401  (fixture)
from tools import fwpack, twin

pytestmark = pytest.mark.usefixtures("twins")
NEW = "0.9.0"


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    """Served over HTTP: good packages of both kinds (the image as README's command makes it,
    no --kind or --target), a broken firmware of both kinds (it raises while importing), and
    packages of both kinds altered after they were made."""
    folder = tmp_path_factory.mktemp("www")

    def broken(kind):
        work = str(tmp_path_factory.mktemp("broken-" + kind))
        lib = fwpack.lib_at("0.9.9", work)
        with open(os.path.join(lib, "chargepoint", "app.py"), "a") as f:
            f.write("\nraise RuntimeError('this firmware is broken')\n")
        if kind == "mpy":
            payload = fwpack.mpy_payload(lib, work)
        else:
            with open(twin.build_image(lib, "fwimage-broken"), "rb") as f:
                payload = f.read()
        return fwpack.package(kind, "twin", "0.9.9", payload)

    assert fwpack.main(["--out", str(folder / "image.cpfw"), "--version", NEW]) == 0
    files = {"image.cpfw": (folder / "image.cpfw").read_bytes(),
             "mpy.cpfw": fwpack.build("mpy", "twin", NEW),
             "broken-image.cpfw": broken("image"), "broken-mpy.cpfw": broken("mpy")}
    for kind in ("image", "mpy"):
        good = bytearray(files[kind + ".cpfw"])
        good[-100] ^= 0xFF  # one byte of the payload changed after the hash was taken
        files["altered-%s.cpfw" % kind] = bytes(good)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield "http://127.0.0.1:%d/" % server.server_port
    server.shutdown()


def statuses(cp):
    return [json.loads(f.text)[3]["status"] for f in cp.frames
            if f.direction == "in" and '"FirmwareStatusNotification"' in f.text]


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


async def update(cs, sim, cp, url, done, retries=None):
    assert await cs.update_firmware("CP001", url, now(), retries=retries,
                                    retry_interval=1 if retries else None) == {}
    await cs.wait_for(lambda: statuses(cp)[-1:] == [done], 90)
    return statuses(cp)


@pytest.mark.parametrize("code", ["frozen", "deployed"])
def test_update_installs_and_the_new_firmware_reports_its_version(world, packages, code):
    _, _, make_sim, make_csms = world
    kind = {"frozen": "image", "deployed": "mpy"}[code]

    async def scenario():
        async with make_csms() as cs:
            sim = make_sim(code=code)
            cp = await online(sim, cs)
            assert cp.boots[-1]["firmwareVersion"] == "0.1.0"
            seen = await update(cs, sim, cp, packages + kind + ".cpfw", "Installed")
            assert seen == ["Downloading", "Downloaded", "Installing", "Installed"]
            assert cp.boots[-1]["firmwareVersion"] == NEW
            s = await sim.until(lambda s: s["online"])
            assert s["boots"] == 2
            flash = os.path.join(sim.state, "flash", "otadata.json")
            if kind == "image":  # confirmed: no rollback at the next reset
                with open(flash) as f:
                    assert json.load(f) == {"boot": "ota_1", "states": {"ota_1": "valid"}}
            else:
                fs = os.path.join(sim.state, "fs")
                assert not os.path.exists(os.path.join(fs, "lib.old"))
                assert not os.path.exists(os.path.join(fs, "data", "fwupdate"))
            booted = len(cp.boots)
            # (a Reset within 2 s of connecting would be taken for the broker's backlog)
            await sim.until(lambda s: s["uptime_ms"] > 3000)
            assert await cs.reset("CP001", "Hard") == {"status": "Accepted"}  # and it stays
            await cs.wait_for(lambda: len(cp.boots) > booted, T)
            assert cp.boots[-1]["firmwareVersion"] == NEW
    run(scenario())


@pytest.mark.parametrize("code", ["frozen", "deployed"])
def test_a_firmware_that_does_not_come_up_is_rolled_back(world, packages, code):
    _, _, make_sim, make_csms = world
    kind = {"frozen": "image", "deployed": "mpy"}[code]

    async def scenario():
        async with make_csms() as cs:
            sim = make_sim(code=code)
            sim.tolerated = ("Traceback", "  File", "RuntimeError: this firmware is broken")
            cp = await online(sim, cs)
            seen = await update(cs, sim, cp, packages + "broken-" + kind + ".cpfw",
                                "InstallationFailed")
            assert seen == ["Downloading", "Downloaded", "Installing", "InstallationFailed"]
            assert [b["firmwareVersion"] for b in cp.boots] == ["0.1.0", "0.1.0"]
            s = await sim.until(lambda s: s["online"])
            # the broken firmware booted (once as an image, three times as .mpy files)
            assert s["boots"] == {"image": 3, "mpy": 5}[kind]
            fs = os.path.join(sim.state, "fs")
            assert not os.path.exists(os.path.join(fs, "data", "fwupdate"))
            assert not os.path.exists(os.path.join(fs, "lib.bad"))
    run(scenario())


@pytest.mark.parametrize("code", ["frozen", "deployed"])
def test_a_package_for_the_other_placement_or_altered_is_never_installed(world, packages,
                                                                         code):
    _, _, make_sim, make_csms = world
    kind, other = {"frozen": ("image", "mpy"), "deployed": ("mpy", "image")}[code]

    async def scenario():
        async with make_csms() as cs:
            sim = make_sim(code=code)
            cp = await online(sim, cs)
            # sound, but not for this board: downloaded and checked, written nowhere
            seen = await update(cs, sim, cp, packages + other + ".cpfw", "InstallationFailed")
            assert seen == ["Downloading", "Downloaded", "InstallationFailed"]
            await cs.wait_for(lambda: "InvalidFirmwarePackage" in cp.security_events, T)
            flash, fs = os.path.join(sim.state, "flash"), os.path.join(sim.state, "fs")
            assert not os.path.exists(os.path.join(flash, "ota_1"))
            assert not os.path.exists(os.path.join(fs, "data", "fw.part"))
            # for this board, but its hash fails
            seen = await update(cs, sim, cp, packages + "altered-" + kind + ".cpfw",
                                "DownloadFailed", retries=1)
            assert seen[3:] == ["Downloading", "DownloadFailed"]
            s = await sim.ask(cmd="status")
            assert s["online"] and s["boots"] == 1  # the old firmware runs on
            assert [b["firmwareVersion"] for b in cp.boots] == ["0.1.0"]
            assert not os.path.exists(os.path.join(fs, "lib.new"))
            with open(os.path.join(flash, "otadata.json")) as f:
                assert json.load(f)["boot"] == "ota_0"  # what the next boot runs
    run(scenario())
