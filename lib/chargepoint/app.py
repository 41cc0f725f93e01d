"""Composition root: reads the device configuration, builds board, transport and charge point,
and runs them in one asyncio loop. The only module that knows which pieces are real."""
import asyncio
import gc
import sys

from chargepoint.model.chargepoint import ChargePoint
from chargepoint.platform.clock import Clock
from chargepoint.platform.store import FileStore

VERSION = "0.1.0"
LOOP_MS = 20  # the safety path (relay) runs at least this often


def build_board(cfg, store):
    """`hardware.driver` "esp32" is chargepoint.hardware.esp32; any other names a module
    `board_<driver>` (the simulator's is board_sim). Its build(options, cfg, store) returns a
    board as documented in chargepoint.model.board."""
    options = cfg["hardware"]
    if options["driver"] == "esp32":
        from chargepoint.hardware import esp32 as module
    else:
        module = __import__("board_" + options["driver"])
    return module.build(options, cfg, store)


def build_transport(cfg, before_connect=None):
    from chargepoint.transport import mqtt, tls

    m = cfg["mqtt"]
    ssl = tls.tls_context(m["ca"], m["cert"], m["key"])
    return mqtt.MqttTransport(cfg["id"], m["endpoint"], port=m["port"], ssl=ssl,
                              keepalive=m["keepalive"], topic_in=m["topic_in"],
                              topic_out=m["topic_out"], before_connect=before_connect)


def build_network(cfg, clock):
    """Wi-Fi and NTP where the board has them (`wifi.ssid` set); (None, None) on the host."""
    ssid = cfg["wifi"]["ssid"]
    if not ssid:
        return None, None
    import network
    import ntptime

    from chargepoint.hardware.wifi import Wifi
    from chargepoint.platform.timesync import TimeSync

    wifi = Wifi(network.WLAN(network.STA_IF), ssid, cfg["wifi"]["password"], clock.ticks_ms)
    return wifi, TimeSync(ntptime.settime, clock.ticks_ms)


def _reboot(board, transport):
    def reboot(hard):
        transport.stop()
        if hasattr(board, "reboot"):
            board.reboot(hard)
            return
        import machine
        if hard:
            machine.reset()
        machine.soft_reset()
    return reboot


def _stop_sessions(cp):
    """Before a reset that the loop cannot see through (Ctrl-D at the REPL): every transaction
    stops now, relay open, its StopTransaction (Reboot) queued on flash for after the boot."""
    for c in cp.connectors:
        if c.tx is not None:
            cp.sessions.stop(c, "Reboot")


async def _run_loop(cp, wdt):
    loop = cp.loop
    while True:
        loop()
        if wdt is not None:
            wdt.feed()  # only a loop that runs feeds it: a stuck one resets the board
        await asyncio.sleep_ms(LOOP_MS)


async def _watch_wifi(wifi):
    while True:
        wifi.step()
        await asyncio.sleep_ms(500)


async def main(cp, board, transport, repl=False, wifi=None, wdt=None):
    tasks = [asyncio.create_task(_run_loop(cp, wdt))]
    if wifi is not None:
        tasks.append(asyncio.create_task(_watch_wifi(wifi)))
    if hasattr(board, "run"):
        tasks.append(asyncio.create_task(board.run(cp)))
    if repl:  # config.json "repl": aiorepl frozen in our image, or installed with mip
        from chargepoint.platform import console

        shell = console.task({"cp": cp, "board": board, "transport": transport,
                              "connectors": cp.connectors}, lambda: _stop_sessions(cp))
        if shell is not None:
            tasks.append(asyncio.create_task(shell))
    transport.start()
    await asyncio.gather(*tasks)


def load_config(path):
    """The checked device configuration, or None after printing what is wrong. The checker
    is needed once per boot: it is dropped afterwards, giving its heap back."""
    from chargepoint import devconfig

    try:
        return devconfig.load(path)
    except devconfig.ConfigError as e:
        print("config:", e)
        return None
    finally:
        sys.modules.pop("chargepoint.devconfig", None)
        package = sys.modules.get("chargepoint")
        if package is not None and hasattr(package, "devconfig"):
            delattr(package, "devconfig")


def run(config_path="config.json", data_dir="data"):
    cfg = load_config(config_path)
    if cfg is None:
        return None
    store = FileStore(data_dir)
    try:
        board = build_board(cfg, store)
    except ValueError as e:  # BoardError: a pin map mistake, one line
        print("config:", e)
        return None
    clock = Clock()
    wifi, timesync = build_network(cfg, clock)
    try:
        transport = build_transport(cfg, timesync.ensure if timesync else None)
    except (OSError, ValueError) as e:
        print("config: TLS files rejected:", e)
        return None
    info = dict(board.info)
    info.setdefault("firmwareVersion", VERSION)
    cp = ChargePoint(board, transport, store, clock,
                     reboot=_reboot(board, transport), boot_info=info)
    wdt = None
    watchdog_ms = cfg["hardware"].get("watchdog_ms", 0)
    if watchdog_ms:
        import machine
        wdt = machine.WDT(timeout=watchdog_ms)
    gc.collect()
    try:
        asyncio.run(main(cp, board, transport, cfg["repl"], wifi, wdt))
    finally:
        # Whatever ended the loop (a soft reset, an error): every relay open, no PWM.
        from chargepoint.hardware.guard import all_off
        all_off(board.connectors)
        transport.stop()
        asyncio.new_event_loop()
    return cp
