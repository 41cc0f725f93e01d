"""`make deploy` (tools/deploy.py): the plan for each kind of board, its refusals, the dry run,
and for real, with mpremote, to the console of a simulated charger in both code placements."""
import asyncio
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT
from test_e2e import T, online, run, world  # noqa: F401  (fixture)
from tools import deploy, twin

pytestmark = pytest.mark.usefixtures("twins")
ABI = (6, 3)
FROZEN = {"version": [1, 28, 0], "mpy": 0x2706, "platform": "esp32",  # .mpy v6.3, xtensawin
          "chargepoint": "frozen", "aiorepl": "frozen"}
STOCK = dict(FROZEN, chargepoint=None, aiorepl=None)


def folder(tmp_path, repl=True, **mqtt):
    d = tmp_path / "CP001"
    d.mkdir()
    names = {"ca": "AmazonRootCA1.pem", "cert": "CP001.cert.pem", "key": "CP001.private.key"}
    names.update(mqtt)
    for name in names.values():
        (d / name).write_text("-----BEGIN X-----\n")
    cfg = {"id": "CP001", "mqtt": dict(endpoint="example-ats.iot.eu-west-1.amazonaws.com",
                                       **names), "repl": repl}
    (d / "config.json").write_text(__import__("json").dumps(cfg))
    return str(d)


def test_our_image_gets_no_lib_and_no_aiorepl(tmp_path):
    cfg, files = deploy.read_folder(folder(tmp_path))
    [cmd] = deploy.plan("/dev/ttyUSB0", files, FROZEN, True, "LIB", ABI)
    copied = [cmd[i + 2] for i, word in enumerate(cmd) if word == "fs" and cmd[i + 1] == "cp"]
    assert copied == [os.path.join(ROOT, "boot.py"), os.path.join(ROOT, "main.py")] + [
        f for f, _ in files]
    assert ":CP001.private.key" in cmd and "-r" not in cmd and cmd[-1] == "reset"


def test_stock_image_gets_the_compiled_lib_and_aiorepl_when_the_repl_is_on(tmp_path):
    _, files = deploy.read_folder(folder(tmp_path))
    mip, cmd = deploy.plan("/dev/ttyUSB0", files, STOCK, True, "LIB", ABI)
    assert mip[-5:] == ["connect", "/dev/ttyUSB0", "mip", "install", "aiorepl"]
    assert cmd[-6:] == ["cp", "-r", "LIB", ":.", "+", "reset"]
    [cmd] = deploy.plan("/dev/ttyUSB0", files, dict(STOCK, aiorepl="fs"), True, "LIB", ABI)
    [cmd] = deploy.plan("/dev/ttyUSB0", files, STOCK, False, "LIB", ABI)  # no REPL wanted


def test_a_board_of_another_mpy_abi_is_refused(tmp_path):
    _, files = deploy.read_folder(folder(tmp_path))
    old = dict(STOCK, version=[1, 22, 2], mpy=0x2506)  # v6.1
    with pytest.raises(deploy.DeployError, match=r"MicroPython 1\.22\.2, whose \.mpy files are "
                                                 r"v6\.1; this tree compiles v6\.3"):
        deploy.plan("/dev/ttyUSB0", files, old, True, "LIB", ABI)
    deploy.plan("/dev/ttyUSB0", files, dict(old, chargepoint="frozen"), True, "LIB", ABI)


def test_a_credential_missing_from_the_folder_is_named(tmp_path):
    d = folder(tmp_path)
    os.remove(os.path.join(d, "AmazonRootCA1.pem"))
    with pytest.raises(deploy.DeployError, match="mqtt.ca names 'AmazonRootCA1.pem'"):
        deploy.read_folder(d)


def test_a_stock_board_without_psram_is_told_the_heap_the_mpy_files_need():
    stock = {"chargepoint": None, "aiorepl": None, "mpy": 6, "version": [1, 28, 0]}
    text = deploy.heap_warning(dict(stock, heap=107456))
    assert "107 KB heap (no PSRAM)" in text and "about 200 KB" in text and "make flash" in text
    assert deploy.heap_warning(dict(stock, heap=4000000)) is None  # PSRAM
    assert deploy.heap_warning(dict(stock, chargepoint="frozen", heap=107456)) is None


def test_the_twin_mpy_cross_emits_the_abi_of_micropython_1_28():
    assert deploy.cross_abi(twin.mpy_cross()) == ABI


def test_a_config_the_firmware_would_refuse_is_refused_before_the_board_is_touched(tmp_path):
    d = folder(tmp_path)
    (tmp_path / "CP001" / "config.json").write_text('{"id": "CP/1", "mqtt": {}}')
    r = subprocess.run([sys.executable, "-m", "tools.deploy", "--port", "/dev/null", "--dir", d],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2
    assert "config.json:" in r.stderr and "mpremote" not in r.stdout


def test_dry_run_prints_every_command_and_runs_none(tmp_path):
    r = subprocess.run([sys.executable, "-m", "tools.deploy", "--port", "/dev/ttyUSB9",
                        "--dir", folder(tmp_path), "--dry-run"],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 4 and all(line.startswith("$ ") for line in lines)
    assert "exec" in lines[0] and "mpy-cross" in lines[1]
    assert lines[2].endswith("mip install aiorepl    # if the board has no aiorepl")
    assert lines[3].endswith(" reset") and ":CP001.private.key" in lines[3]


@pytest.mark.parametrize("code", ["frozen", "deployed"])
def test_deploy_to_the_console_of_a_simulated_charger(world, tmp_path, code):  # noqa: F811
    _, _, make_sim, make_csms = world

    async def scenario():
        async with make_csms() as cs:
            sim = make_sim(code=code, console=True)
            # mpremote asks for files that may not be there (os.stat): aiorepl's raw REPL
            # prints each such error, after the end-of-output byte, with its traceback
            sim.tolerated = ("\x04Traceback (most recent call last):",)
            await online(sim, cs)
            fs = os.path.join(sim.state, "fs")
            source = tmp_path / "provisioned"
            source.mkdir()
            for name in ("config.json", "ca.pem", "cert.pem", "key.pem"):
                shutil.copy(os.path.join(fs, name), source / name)
            lost = os.path.join(fs, "lib", "chargepoint", "model", "metering.mpy")
            if code == "deployed":
                os.remove(lost)  # the one module that differs on the board
            console = (await sim.ask(cmd="status"))["console"]
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tools.deploy", "--port", console, "--dir", str(source),
                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            out = (await asyncio.wait_for(proc.communicate(), 120))[0].decode()
            assert proc.returncode == 0, out
            where = {"frozen": "frozen in the image", "deployed": "in /lib"}[code]
            assert "board: MicroPython 1.28.0 on linux; firmware %s" % where in out
            for name in ("boot.py", "main.py", "config.json", "ca.pem", "cert.pem", "key.pem"):
                assert "Up to date: %s" % name in out
            if code == "deployed":
                assert "Up to date: ./lib/chargepoint/model/sessions.mpy" in out
                assert "metering.mpy" not in out.replace("cp ", "")  # copied, not up to date
                assert os.path.exists(lost)
            else:
                assert "lib/chargepoint" not in out
            await sim.until(lambda s: s["boots"] == 2 and s["online"], timeout=T)
    run(scenario())
