"""Write a MicroPython firmware image to an ESP32-family board with esptool 5.x.

Usage: python3 -m tools.flash --port /dev/ttyUSB0 --image firmware.bin
           [--chip esp32|esp32s2|esp32s3|esp32c3|esp32c6|esp32c5|esp32p4]
           [--erase] [--baud 460800] [--dry-run]

The image is MicroPython's whole `firmware.bin` (bootloader, partition table and app merged),
written at the chip's bootloader offset: 0x1000 on the ESP32 and ESP32-S2, 0x0 on the S3, C3
and C6, 0x2000 on the C5 and P4. Before anything touches the board the image is checked with
esptool's offline `image-info`: it must be an ESP image, for --chip, with a valid checksum and
digest, and not an application alone (`micropython.bin` belongs at 0x10000, not here).
--erase erases the whole flash first (the filesystem, config.json and data/ with it).
--dry-run prints every command, the image check included, and runs none.

esptool runs as `sys.executable -m esptool`, so the copy in the venv (requirements.txt) is used.
The command lines are built by pure functions: `flash_commands()`, `image_info_command()`.
"""
import argparse
import importlib.util
import os
import shlex
import subprocess
import sys

# Where the ROM bootloader looks for the second-stage bootloader, which starts firmware.bin.
OFFSETS = {
    "esp32": 0x1000,
    "esp32s2": 0x1000,
    "esp32s3": 0x0,
    "esp32c3": 0x0,
    "esp32c6": 0x0,
    "esp32c5": 0x2000,
    "esp32p4": 0x2000,
}
DEFAULT_CHIP = "esp32"
DEFAULT_BAUD = 460800


class FlashError(Exception):
    """A reason not to flash, told to the user in one line."""


def esptool(*args):
    """The argv that runs the esptool installed for this Python."""
    return [sys.executable, "-m", "esptool", *args]


def image_info_command(image):
    # No --chip: esptool then reads the chip from the image's extended header.
    return esptool("image-info", image)


def flash_commands(port, chip, image, baud=DEFAULT_BAUD, erase=False):
    """The esptool command lines that write `image` to the board on `port`, in order."""
    if chip not in OFFSETS:
        raise FlashError("unknown chip %r (one of %s)" % (chip, ", ".join(OFFSETS)))
    commands = []
    if erase:
        commands.append(esptool("--chip", chip, "--port", port, "erase-flash"))
    commands.append(esptool("--chip", chip, "--port", port, "--baud", str(baud),
                            "write-flash", "0x%x" % OFFSETS[chip], image))
    return commands


def chip_name(image_type):
    """esptool's display name ("ESP32-S3") as a --chip name ("esp32s3")."""
    return image_type.strip().lower().replace("-", "")


def parse_image_info(text):
    """What `esptool image-info` said about an image: chip, application?, checks passed."""
    info = {"chip": None, "application": False, "checksum_valid": False, "digest_valid": True}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("Detected image type:"):
            info["chip"] = chip_name(line.split(":", 1)[1])
        elif line.startswith("Checksum:"):
            info["checksum_valid"] = line.endswith("(valid)")
        elif line.startswith("Validation hash:"):
            info["digest_valid"] = line.endswith("(valid)")
        elif line == "Application Information":
            info["application"] = True
    return info


def _esptool_error(output):
    """esptool's own reason, from its "A fatal error occurred: ..." line."""
    for line in reversed(output.splitlines()):
        if "fatal error occurred:" in line:
            return line.split("fatal error occurred:", 1)[1].strip()
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def check_image(image, chip):
    """Run esptool's offline `image-info` on `image`; FlashError unless it suits `chip`."""
    env = dict(os.environ, NO_COLOR="1", TERM="dumb")  # plain lines to parse
    result = subprocess.run(image_info_command(image), capture_output=True, text=True, env=env)
    output = result.stdout + "\n" + result.stderr
    if result.returncode != 0:
        raise FlashError("%s is not an ESP image (esptool image-info: %s)"
                         % (image, _esptool_error(output)))
    info = parse_image_info(output)
    if info["chip"] is None:
        raise FlashError("%s: esptool image-info did not report a chip" % image)
    if info["chip"] != chip:
        raise FlashError("%s is an image for %s, not for --chip %s" % (image, info["chip"], chip))
    if not info["checksum_valid"] or not info["digest_valid"]:
        raise FlashError("%s is a corrupt ESP image (checksum or SHA-256 digest invalid)" % image)
    if info["application"]:
        raise FlashError("%s is an application alone (like micropython.bin), not a whole "
                         "firmware.bin starting with the bootloader: it does not belong at 0x%x"
                         % (image, OFFSETS[chip]))
    return info


def check_inputs(port, image):
    """The checks that need no esptool: the image file and the serial device exist."""
    if not os.path.isfile(image):
        raise FlashError("image not found: %s" % image)
    # esptool also takes URLs (rfc2217://host:port, socket://...): only device paths are checked.
    if "://" not in port and not os.path.exists(port):
        raise FlashError("port not found: %s (is the board plugged in?)" % port)


def check_esptool():
    if importlib.util.find_spec("esptool") is None:
        raise FlashError("esptool is not installed for %s: run `make venv`" % sys.executable)


def _run(argv):
    return subprocess.run(argv).returncode


def flash(port, image, chip=DEFAULT_CHIP, baud=DEFAULT_BAUD, erase=False, dry_run=False,
          run=_run, out=None):
    """Check, then run (or with dry_run only print) the commands. FlashError on any failure."""
    out = out or sys.stdout
    commands = flash_commands(port, chip, image, baud, erase)  # validates chip first
    check_inputs(port, image)
    if dry_run:
        for argv in [image_info_command(image)] + commands:
            print(shlex.join(argv), file=out)
        return
    check_esptool()
    check_image(image, chip)
    for argv in commands:
        print(shlex.join(argv), file=out, flush=True)
        code = run(argv)
        if code != 0:
            raise FlashError("esptool exited with %d: %s" % (code, shlex.join(argv[1:])))


def main(argv=None, run=_run):
    parser = argparse.ArgumentParser(prog="python3 -m tools.flash", description=__doc__.split("\n")[0])
    parser.add_argument("--port", required=True, help="serial device, e.g. /dev/ttyUSB0")
    parser.add_argument("--chip", default=DEFAULT_CHIP, choices=list(OFFSETS))
    parser.add_argument("--image", required=True, help="MicroPython's firmware.bin")
    parser.add_argument("--erase", action="store_true", help="erase the whole flash first")
    parser.add_argument("--baud", type=int, default=DEFAULT_BAUD)
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run none")
    args = parser.parse_args(argv)
    try:
        flash(args.port, args.image, args.chip, args.baud, args.erase, args.dry_run, run=run)
    except FlashError as e:
        print("flash: error: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
