"""Heap the optional OCPP profiles hold on one charger: a local authorisation list, charging
profiles, and a firmware download while it runs (frozen code at -X heapsize=HEAP)."""
import asyncio
import datetime
import http.server
import json
import statistics
import threading
import time

from tools import twin
from tools.bench.rig import HEAP, T, PhaseError, heap_total, log

SEND_MAX = 24  # SendLocalListMaxLength the firmware declares
RECENT = 24  # inbound CALLs that fill the engine's memory of answers (engine._RECENT_BYTES)
ATTEMPTS = 5  # UpdateFirmware sent again when the firmware gave up before asking
ANSWER_S = 10  # a CALL unanswered this long is sent again (the firmware dropped it), twice
RATE = 4096  # bytes per second the firmware server trickles
PIECE = 512


def _tx_default(pid, connector, stack):
    """A TxDefaultProfile of three periods (amps), one per connector and stack level."""
    return connector, {
        "chargingProfileId": pid, "stackLevel": stack,
        "chargingProfilePurpose": "TxDefaultProfile", "chargingProfileKind": "Relative",
        "chargingSchedule": {"chargingRateUnit": "A", "chargingSchedulePeriod": [
            {"startPeriod": 0, "limit": 16.0 + stack},
            {"startPeriod": 1800, "limit": 10.0 + stack},
            {"startPeriod": 3600, "limit": 6.0 + stack}]}}


class _Trickle(http.server.BaseHTTPRequestHandler):
    """A firmware package that arrives slowly and never whole: the header line of an image for
    the twin (the size it announces is never reached), then payload bytes at RATE per second
    for `server.seconds`; then the connection closes: the firmware reports DownloadFailed."""

    def do_GET(self):  # noqa: N802 - http.server's name
        srv = self.server
        declared = 1 << 20
        head = json.dumps({"format": 1, "kind": "image", "target": "twin", "version": "9.9.9",
                           "size": declared, "sha256": "0" * 64},
                          separators=(",", ":")).encode() + b"\n"
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(head) + declared))
        self.end_headers()
        srv.started.set()
        try:
            self.wfile.write(head)
            self.wfile.flush()
            end = time.monotonic() + srv.seconds
            piece = b"\xa5" * PIECE
            while time.monotonic() < end and not srv.stopping.is_set():
                self.wfile.write(piece)
                self.wfile.flush()
                srv.sent += PIECE
                time.sleep(PIECE / RATE)
        except OSError:
            pass
        finally:
            srv.ended.set()
        self.close_connection = True

    def log_message(self, *args):
        pass


def _server(seconds):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Trickle)
    srv.daemon_threads = True
    srv.seconds = seconds
    srv.sent = 0
    srv.started, srv.ended, srv.stopping = threading.Event(), threading.Event(), threading.Event()
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def _utc(offset_s=0):
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=offset_s)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _firmware_statuses(cp):
    return [json.loads(f.text)[3]["status"] for f in cp.frames
            if f.direction == "in" and '"FirmwareStatusNotification"' in f.text]


async def _download(ch, seconds, sample=None):
    """UpdateFirmware from a trickling server: (samples taken by `sample()` every 0.25 s while
    it sent, bytes sent), or (None, 0) when the firmware gave up before it asked for the
    package. Returns once the firmware has reported DownloadFailed. `ch`: a _Charger."""
    cs, sim, cp = ch.cs, ch.sim, ch.cp
    failed = _firmware_statuses(cp).count("DownloadFailed")

    def over():
        return _firmware_statuses(cp).count("DownloadFailed") > failed

    srv = _server(seconds)
    try:
        url = "http://127.0.0.1:%d/fw.cpfw" % srv.server_port
        ans = await ch.ask("UpdateFirmware", lambda t: cs.update_firmware(
            sim.cp_id, url, _utc(-60), timeout=t))
        if ans != {}:
            raise PhaseError("UpdateFirmware: %s" % ans)
        deadline = time.monotonic() + T  # (the server's thread does not wake cs.wait_for)
        while not srv.started.is_set() and not over():
            if time.monotonic() > deadline:
                raise PhaseError("no download within %s s (status %s)" % (T,
                                                                         cp.firmware_status))
            await asyncio.sleep(0.05)
        if not srv.started.is_set():
            return None, 0
        during = []
        while not srv.ended.is_set():
            if sample is not None:
                during.append(await sample())
            await asyncio.sleep(0.25)
        await cs.wait_for(over, 60)
        return during, srv.sent
    finally:
        srv.stopping.set()
        await asyncio.to_thread(srv.shutdown)  # up to its poll interval: not on the loop
        srv.server_close()


async def _downloads(ch, seconds, sample=None):
    """_download until the firmware asks for the package, at most ATTEMPTS times: (its
    samples or None, bytes sent, how many attempts gave up before asking)."""
    for gave_up in range(ATTEMPTS):
        during, sent = await _download(ch, seconds, sample)
        if during is not None:
            return during, sent, gave_up
        await asyncio.sleep(1.0)
    return None, 0, ATTEMPTS


class _Charger:
    """One simulator on the stage, its Charger record, and its live heap."""

    def __init__(self, stage, cp_id, heap):
        self.stage, self.cs = stage, stage.cs
        self.sim = stage.sim(cp_id=cp_id, heap=heap)
        self.heap = heap
        self.total = heap_total(twin.ensure(), heap)
        self.cp = None
        self.unanswered = []  # CALLs sent again: the firmware never answered (dropped) them

    async def ask(self, name, call):
        """`call(timeout)`, a CSMS request, sent again up to twice while unanswered (an inbound
        frame the firmware had no memory for is dropped, and its CALL never answered)."""
        for _ in range(2):
            try:
                return await call(ANSWER_S)
            except asyncio.TimeoutError:
                self.unanswered.append(name)
                log("profiles: %s unanswered in %d s: sent again" % (name, ANSWER_S))
        return await call(ANSWER_S)

    async def start(self):
        """Online, the boot's calls answered, the engine's memory of recent CALLs full."""
        self.cp = await self.stage.online(self.sim)
        await asyncio.sleep(2.0)
        # The engine remembers the last RECENT inbound CALLs with their answers (duplicate
        # deliveries): fill that before the first level, so that no figure counts it.
        for _ in range(RECENT):
            ans = await self.ask("GetLocalListVersion", lambda t: self.cs.get_local_list_version(
                self.sim.cp_id, timeout=t))
            if ans != {"listVersion": 0}:
                raise PhaseError("GetLocalListVersion before any list: %s" % ans)
        return self

    async def sample(self):
        s = await self.sim.until(lambda s: s["heap_free"] is not None)  # null until it runs
        return self.total - s["heap_free"]

    async def level(self):
        """The least of 5 samples over a second, after a second's pause."""
        await asyncio.sleep(1.0)
        used = []
        for _ in range(5):
            used.append(await self.sample())
            await asyncio.sleep(0.2)
        return min(used)

    async def downloads(self, seconds, measure=False):
        return await _downloads(self, seconds, self.sample if measure else None)

    async def check(self, tries):
        seen = _firmware_statuses(self.cp)
        if seen != ["Downloading", "DownloadFailed"] * tries:
            raise PhaseError("%s FirmwareStatusNotification: %s" % (self.sim.cp_id, seen))
        s = await self.sim.ask(cmd="status")
        if s["boots"] != 1:
            raise PhaseError("%s: the firmware restarted (%d boots)" % (self.sim.cp_id,
                                                                       s["boots"]))


async def profiles(lab, entries, n_profiles, download_s):
    """Live heap increases on one frozen charger at -X heapsize=HEAP, each over the level just
    before it: the peak while a firmware download trickles for `download_s` seconds (first,
    while the heap is least fragmented: the download needs a 4 KB buffer in one piece; sent
    again when the firmware gives up before asking for the package), after a local list of
    `entries` idTags (SendLocalList Full, then Differentials of SEND_MAX), after `n_profiles`
    TxDefaultProfiles. Then downloads again, only to see how often they give up. When no
    download started at HEAP, the download figure comes from a second charger at HEAP * 3 / 2
    (`download_heap`)."""
    if n_profiles > 10:
        raise ValueError("MaxChargingProfilesInstalled is 10")
    async with lab.stage() as stage:
        cs = stage.cs
        a = await _Charger(stage, "CP-PROF", HEAP).start()
        cp_id = a.sim.cp_id
        idle = await a.level()

        # -- a firmware download while it runs ----------------------------------------------
        during, sent, gave_up = await a.downloads(download_s, measure=True)
        after_download = await a.level()
        download_heap, before = HEAP, idle

        # -- the local authorisation list ---------------------------------------------------
        tags = ["04%08X" % i for i in range(entries)]
        version = 0
        t = time.monotonic()
        for k in range(0, entries, SEND_MAX):
            version += 1
            part = [{"idTag": tag, "idTagInfo": {"status": "Accepted"}}
                    for tag in tags[k:k + SEND_MAX]]
            kind = "Full" if k == 0 else "Differential"
            sent_again = len(a.unanswered)
            ans = await a.ask("SendLocalList", lambda t: cs.send_local_list(
                cp_id, version, kind, part, timeout=t))
            if ans == {"status": "VersionMismatch"} and len(a.unanswered) > sent_again:
                # sent again: the first had been carried out, its answer lost
                if await a.ask("GetLocalListVersion", lambda t: cs.get_local_list_version(
                        cp_id, timeout=t)) == {"listVersion": version}:
                    ans = {"status": "Accepted"}
            if ans != {"status": "Accepted"}:
                raise PhaseError("SendLocalList %s version %d: %s" % (kind, version, ans))
        ans = await a.ask("GetLocalListVersion", lambda t: cs.get_local_list_version(
            cp_id, timeout=t))
        if ans != {"listVersion": version}:
            raise PhaseError("GetLocalListVersion after %d updates: %s" % (version, ans))
        list_s = time.monotonic() - t
        with_list = await a.level()

        # -- charging profiles --------------------------------------------------------------
        for i in range(n_profiles):
            connector, profile = _tx_default(100 + i, i % 2, i // 2)
            ans = await a.ask("SetChargingProfile", lambda t: cs.set_charging_profile(
                cp_id, connector, profile, timeout=t))
            if ans != {"status": "Accepted"}:
                raise PhaseError("SetChargingProfile %d on %d: %s" % (i + 1, connector, ans))
        with_profiles = await a.level()

        # -- downloads again, the list and profiles installed -------------------------------
        again, _, gave_up_again = await a.downloads(1.0)
        await a.check(gave_up + (during is not None) + gave_up_again + (again is not None))

        if during is None:  # the download figure from a charger with room
            download_heap = HEAP * 3 // 2
            b = await _Charger(stage, "CP-PROF-B", download_heap).start()
            before = await b.level()
            during, sent, gave_up_b = await b.downloads(download_s, measure=True)
            if during is None:
                raise PhaseError("UpdateFirmware %d times at -X heapsize=%d and %d times at "
                                 "%d: each time the firmware gave up before it asked for the "
                                 "package" % (ATTEMPTS, HEAP, ATTEMPTS, download_heap))
            await b.check(gave_up_b + 1)
            a.unanswered += b.unanswered
        else:
            gave_up_b = None
        if not during:
            raise PhaseError("no heap sample during the download")
    result = {
        "download": max(during) - before, "local_list": with_list - after_download,
        "charging_profiles": with_profiles - with_list,
        "entries": entries, "updates": version, "list_s": round(list_s, 1),
        "n_profiles": n_profiles, "download_s": download_s, "download_sent": sent,
        "download_heap": download_heap, "download_samples": len(during),
        "download_median": int(statistics.median(during)) - before,
        "download_after": after_download - idle, "download_gave_up": gave_up,
        "download_again_gave_up": gave_up_again, "download_gave_up_b": gave_up_b,
        "attempts": ATTEMPTS, "unanswered": a.unanswered,
        "levels": {"idle": idle, "after_download": after_download, "local_list": with_list,
                   "charging_profiles": with_profiles}}
    log("profiles: %s" % json.dumps(result))
    return result
