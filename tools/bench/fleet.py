"""A fleet of simulated chargers on one broker and one Central System, each running RFID
sessions: the messages they make, and the RSS and CPU of one twin among them."""
import asyncio
import random
import time

from tools.bench.rig import TAG, PhaseError, cpu_seconds, memory, stopped

BATCH = 10  # simulators started at once (two cores)


async def fleet(lab, n, seconds, mv_s):
    async with lab.stage(response_timeout=60) as stage:
        cs = stage.cs
        sims = [stage.sim("CP-F%03d" % (i + 1)) for i in range(n)]
        for k in range(0, n, BATCH):
            await asyncio.gather(*(s.start() for s in sims[k:k + BATCH]))
            await asyncio.sleep(1.0)
        await asyncio.gather(*(stage.online(s, 120, start=False) for s in sims))
        await asyncio.gather(*(cs.change_configuration(s.cp_id, "MeterValueSampleInterval",
                                                       str(mv_s), timeout=60) for s in sims))
        pid = sims[0].firmware_pid()
        end = time.monotonic() + seconds
        failures = []

        async def pause(rnd, lo, hi):
            await asyncio.sleep(max(0, min(rnd.uniform(lo, hi), end - time.monotonic())))

        async def drive(sim):
            rnd = random.Random(sim.cp_id)
            await asyncio.sleep(rnd.uniform(0, 3))
            await sim.ask(cmd="load", connector=1, amps=16.0)
            while time.monotonic() < end - 5:
                try:
                    await sim.ask(cmd="ev", connector=1, state="C")
                    await sim.ask(cmd="rfid", uid=TAG)
                    await sim.until(lambda s: s["connectors"]["1"]["relay"], 30)
                    await pause(rnd, 8, 16)
                    await sim.ask(cmd="rfid", uid=TAG)
                    await sim.ask(cmd="ev", connector=1, state="A")
                    await pause(rnd, 2, 4)
                except (PhaseError, asyncio.TimeoutError) as e:
                    failures.append("%s: %s" % (sim.cp_id, e))
                    await asyncio.sleep(1)

        def frames():
            return sum(len(c.frames) for c in cs.chargers.values())

        def all_cpu():
            return sum(cpu_seconds(s.firmware_pid()) for s in sims)

        f0, c0, w0, total0 = frames(), cpu_seconds(pid), time.monotonic(), all_cpu()
        await asyncio.wait_for(asyncio.gather(*(drive(s) for s in sims)), seconds + 60)
        f1, c1, w1, total1 = frames(), cpu_seconds(pid), time.monotonic(), all_cpu()
        rss, hwm = memory(pid)
        online = sum(1 for s in await asyncio.gather(*(x.ask(cmd="status") for x in sims))
                     if s["online"])
        sessions = sum(stopped(c) for c in cs.chargers.values())
    return {"chargers": n, "online_at_end": online,
            "messages_per_s": round((f1 - f0) / (w1 - w0), 1),
            "frames": f1 - f0, "seconds": round(w1 - w0, 1), "sessions": sessions,
            "twin_rss_bytes": rss, "twin_rss_peak_bytes": hwm,
            "twin_cpu_percent": round((c1 - c0) / (w1 - w0) * 100, 2),
            "twins_cpu_percent_total": round((total1 - total0) / (w1 - w0) * 100, 1),
            "driver_failures": failures[:5], "driver_failure_count": len(failures)}
