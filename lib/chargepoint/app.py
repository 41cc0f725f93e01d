"""Composition root: reads the device configuration, builds the services once (event log,
board, network, transport, uploader, updater) and the charge point with its features, and
runs them in one asyncio loop. The only module that knows which pieces are real.

The features are chargepoint.model.features.FEATURES; a build that adds one (a vendor's
DataTransfer, say) adds it in features() here. The services they may ask for are built in
run() (chargepoint.model names them).

Safe mode (main.py decides it, after boots that failed in a row): run(safe=why) builds the
charge point from safe_features() only, none of the others imported, so that a module that
breaks the normal start (or a record that does) is not touched: every connector Faulted
(InternalError, `info` why), relays open, the transport and a minimal OCPP set
(chargepoint.model.chargepoint.SAFE_ACTIONS). The boot guard (chargepoint.bootguard) is
cleared after a stable minute of a normal run (the crashes it counts after a stable hour),
and before every reboot the firmware asks for itself: a Reset from the Central System leaves
safe mode."""
import asyncio
import gc

from chargepoint import bootguard
from chargepoint.model import unload
from chargepoint.model.chargepoint import ChargePoint
from chargepoint.platform.clock import Clock
from chargepoint.platform.store import FileStore
from chargepoint.transport.mailbox import doorbell

VERSION = "0.1.0"
LOOP_MS = 20  # the safety path (relay) runs at least this often
STABLE_MS = 60000  # a normal run this long clears the boot guard: this boot did not fail
STABLE_CRASHES_MS = 3600000  # and this long the crashes it counts (chargepoint.bootguard)
_GC_EVERY = 8192  # bytes allocated between collections


def features():
    """The charge point's features: the standard table, + (acme.AcmeData,) for one's own."""
    from chargepoint.model.features import FEATURES

    return FEATURES


def safe_features():
    """Safe mode's: events, the Core operations it answers, diagnostics, firmware update."""
    from chargepoint.model import diagnostics, firmware, remote, security

    return (security.Security, remote.Remote, diagnostics.Diagnostics, firmware.Firmware)


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


def build_transport(cfg, before_connect=None, installed_ca=(), say=print, wake=None,
                    identity=None, store=None):
    """`installed_ca`: the Central System roots installed over OCPP (DER), trusted besides
    `mqtt.ca`. The context is built once: what InstallCertificate/DeleteCertificate change
    applies from the next boot. `wake()`: called by the network thread for a frame in.
    `identity`: (certificate, key) DER of the charger's own making (own_identity()),
    presented instead of `mqtt.cert`/`mqtt.key`; a handshake the server fails before it ever
    succeeded with it makes the link fall back to those files (tls.TlsLink) and the identity
    feature marks it refused, so the next boots do not try it again. With
    `mqtt.provision_template` those files are the claim certificate: without an identity the
    link provisions one first (chargepoint.transport.claim, `store` keeps its records), with
    one it never falls back to the claim, and its renewal goes through the same API
    (MqttTransport.renew)."""
    from chargepoint.transport import mqtt, tls

    m = cfg["mqtt"]
    template = m["provision_template"]
    provisioning = None
    kind = "config"
    ssl = tls.tls_context(m["ca"], m["cert"], m["key"], installed_ca, identity=identity)
    if identity is not None:
        kind = "own"

        def provisioned():
            say("tls: own certificate refused at the handshake: back to config.json's")
            return tls.tls_context(m["ca"], m["cert"], m["key"], installed_ca)
        ssl = tls.TlsLink(ssl, fallback=provisioned if m["cert"] and not template else None)
    elif template:
        kind = "claim"
    if template:
        def provisioning():  # (its module is imported only for the work, dropped after)
            from chargepoint.transport.claim import Claim

            return Claim(store, template, cfg["id"], Clock().ticks_ms, say,
                         lambda cert, key: tls.tls_context(m["ca"], None, None, installed_ca,
                                                           identity=(cert, key)))
    der = identity[0] if identity else _der(m["cert"])
    serial = None
    if der is not None:
        from chargepoint.ocpp import x509

        try:
            serial = x509.Certificate(der).serial
        except (ValueError, IndexError):
            pass
        unload("chargepoint.ocpp", "x509")
    return mqtt.MqttTransport(cfg["id"], m["endpoint"], port=m["port"], ssl=ssl,
                              keepalive=m["keepalive"], topic_in=m["topic_in"],
                              topic_out=m["topic_out"], before_connect=before_connect, say=say,
                              wake=wake, provisioning=provisioning, identity=kind,
                              serial=serial)


def _der(path):
    """The DER of the first certificate of a PEM or DER file; None when there is none."""
    if not path:
        return None
    from chargepoint.transport import tls

    try:
        return tls.ca_certificates(path)[0]
    except (OSError, ValueError, IndexError):
        return None


def own_identity(store):
    """(certificate DER, SEC 1 key DER) the charger had signed (chargepoint.model.identity),
    unless a server refused it; None when there is none."""
    import binascii

    record = store.read("identity")
    if not record or record.get("refused"):
        return None
    return binascii.a2b_base64(record["cert"]), binascii.a2b_base64(record["key"])


def installed_roots(store):
    """The Central System roots installed over OCPP, for the TLS context. Their module is
    needed once per boot: it is dropped afterwards, giving its heap back."""
    from chargepoint.model import certificates

    try:
        return certificates.roots(store)
    finally:
        unload("chargepoint.model", "certificates")
        unload("chargepoint.ocpp", "x509")


def build_network(cfg, clock, say=print):
    """Wi-Fi and NTP where the board has them (`wifi.ssid` set); (None, None) on the host."""
    ssid = cfg["wifi"]["ssid"]
    if not ssid:
        return None, None
    import network
    import ntptime
    import time

    from chargepoint.hardware.wifi import Wifi
    from chargepoint.platform.timesync import TimeSync

    wifi = Wifi(network.WLAN(network.STA_IF), ssid, cfg["wifi"]["password"], clock.ticks_ms)
    return wifi, TimeSync(ntptime.settime, clock.ticks_ms, time.time, say)


def _upload(url, path):
    # imported on the first GetDiagnostics, in the network thread: no heap for it until then
    from chargepoint.platform import http

    http.upload(url, path)


def _ca_certificates(cfg):
    """config.json's CA as the security feature lists it (GetInstalledCertificateIds): the
    DER of each certificate, read when asked."""
    ca = cfg[cfg["transport"]].get("ca")
    if not ca:
        return None

    def read():
        from chargepoint.transport import tls

        return tls.ca_certificates(ca)
    return read


def _client_certificate(cfg):
    """config.json's client certificate (DER), read when the renewal check asks."""
    path = cfg[cfg["transport"]].get("cert")
    if not path:
        return None
    return lambda: _der(path)


def _reboot(board, transport, log, data_dir):
    """The platform's reset. The log's buffered lines go to the flash first: a hard reset
    loses what is only in RAM, and the lines of the reboot itself (ResetOrReboot, written
    by whoever asked for it) must survive it. A reboot asked for is no failed boot."""
    def reboot(hard):
        log.flush()
        bootguard.clear(data_dir, True)
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
    stops now, relay open, its StopTransaction (Reboot) queued on flash for after the boot,
    and the reboot listeners are told (ResetOrReboot)."""
    for c in cp.connectors:
        if c.tx is not None:
            cp.sessions.stop(c, "Reboot")
    cp.announce_reboot(False, "soft reset at the console")


async def _run_loop(cp, wdt):
    """The charge point's loop every LOOP_MS."""
    loop = cp.loop
    while True:
        loop()
        if wdt is not None:
            wdt.feed()  # only a loop that runs feeds it: a stuck one resets the board
        await asyncio.sleep_ms(LOOP_MS)


async def _on_frames(cp, bell):
    """The loop run again at once for every frame in (the network thread rings `bell`): an
    answer to a CALL of ours is taken and the next CALL leaves, a RemoteStart closes the
    relay, without waiting out LOOP_MS."""
    reader = asyncio.StreamReader(bell.sock)
    buf = bytearray(1)
    while True:
        await reader.readinto(buf)
        bell.quiet()
        cp.loop()


async def _watch_wifi(wifi):
    while True:
        wifi.step()
        await asyncio.sleep_ms(500)


async def _stable(data_dir):
    await asyncio.sleep_ms(STABLE_MS)
    bootguard.clear(data_dir)
    await asyncio.sleep_ms(STABLE_CRASHES_MS - STABLE_MS)
    bootguard.clear(data_dir, True)


async def main(cp, board, transport, repl=False, wifi=None, wdt=None, bell=None,
               guard=None):
    """`guard`: the data folder whose boot guard a stable minute clears (None: safe mode);
    `bell`: the Doorbell the network thread rings for a frame in."""
    tasks = [asyncio.create_task(_run_loop(cp, wdt))]
    if bell is not None:
        tasks.append(asyncio.create_task(_on_frames(cp, bell)))
    if guard is not None:
        asyncio.create_task(_stable(guard))
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
        unload("chargepoint", "devconfig")


def run(config_path="config.json", data_dir="data", safe=None):
    cfg = load_config(config_path)
    if cfg is None:
        return None
    store = FileStore(data_dir)
    clock = Clock()
    from chargepoint.platform.log import Log

    log = Log(data_dir, clock)  # the event log on flash: GetDiagnostics uploads it
    try:
        board = build_board(cfg, store)
    except ValueError as e:  # BoardError: a pin map mistake, one line
        print("config:", e)
        return None
    wifi, timesync = build_network(cfg, clock, log.say)
    ntp = timesync.ensure if timesync else None
    table = features() if safe is None else safe_features()
    links = None
    bell = doorbell(log.say, "loop")  # rung by the network thread for every frame in
    wake = bell.ring if bell is not None else None
    try:
        if cfg["transport"] == "websocket":  # (its modules take no heap on an MQTT charger)
            from chargepoint.links import build_websocket
            from chargepoint.model.connection import Connection

            transport, links = build_websocket(cfg, lambda: installed_roots(store), ntp,
                                               log.say, wake, own_identity(store))
            table = table + (Connection,)
        else:
            transport = build_transport(cfg, ntp, installed_roots(store), log.say, wake,
                                        own_identity(store), store)
    except (OSError, ValueError) as e:
        print("config: TLS files rejected:", e)
        return None
    info = dict(board.info)
    info.setdefault("firmwareVersion", VERSION)
    from chargepoint.platform.update import Updater

    services = {"log": log, "upload": _upload, "updater": Updater(store, VERSION),
                "folder": data_dir, "timesync": timesync, "ca_certificates": _ca_certificates(cfg),
                "links": links, "charge_point_id": cfg["id"],
                "client_certificate": _client_certificate(cfg)}
    if links is None and cfg["mqtt"].get("provision_template"):  # renewal by the same API
        services["renew"] = transport.renew
    cp = ChargePoint(board, transport, store, clock, _reboot(board, transport, log, data_dir),
                     info, services, table, safe)
    log.write("boot", "boot %d, firmware %s" % (cp.boot, VERSION))
    if safe is not None:
        log.say("safe mode: " + safe)
    wdt = None
    watchdog_ms = cfg["hardware"].get("watchdog_ms", 0)
    if watchdog_ms:
        import machine
        wdt = machine.WDT(timeout=watchdog_ms)
    gc.collect()
    # A collection after every _GC_EVERY bytes allocated, not only when the heap is full: the
    # garbage goes while it is young and the allocator starts again from the bottom, so the
    # objects that live long stay packed low and the rest of the heap stays in large pieces
    # (waiting for a full heap scattered them: after an hour a 3 KB frame or a 4 KB answer
    # found no room with 40 KB free).
    gc.threshold(_GC_EVERY)
    stopped = None
    try:
        asyncio.run(main(cp, board, transport, cfg["repl"], wifi, wdt, bell,
                         data_dir if safe is None else None))
    except BaseException as e:
        stopped = e
        raise
    finally:
        # Whatever ended the loop (a soft reset, an error): every relay open, no PWM.
        from chargepoint.hardware.guard import all_off
        all_off(board.connectors)
        transport.stop()
        if bell is not None:
            bell.close()
        asyncio.new_event_loop()
        if stopped is not None:  # why the firmware stopped, for the next diagnostics upload
            log.write("app", "stopped: %s" % type(stopped).__name__)
        log.flush()
    return cp
