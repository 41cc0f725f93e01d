"""The live heap of a simulated charger at idle, the firmware's share and the simulation's
(the figures `make bench` takes in its reference scenario, without the rest of the bench: a
minute instead of eight, to measure a change before and after).

    python3 -m tools.heapprobe [--connectors N] [--samples 10]

Prints one JSON object: firmware_idle (median, min, max of the samples, bytes), simulation,
total. On the twin, frozen, at -X heapsize=110000, online with Mosquitto and the development
Central System, 3 s after it came online, a sample every 0.2 s."""
import argparse
import asyncio
import json
import statistics
import tempfile

from tools import twin
from tools.bench.rig import HEAP, Lab, heap_total


async def probe(connectors, samples):
    lab = Lab(tempfile.mkdtemp(prefix="heapprobe-"))
    total = heap_total(twin.ensure(), HEAP)
    try:
        async with lab.stage() as stage:
            sim = stage.sim(connectors=connectors)
            await stage.online(sim)
            await asyncio.sleep(3)
            fw = []
            for _ in range(samples):
                s = await sim.ask(cmd="status")
                fw.append(total - s["heap_free"] - s["heap_simulation"])
                await asyncio.sleep(0.2)
            return {"firmware_idle": {"median": int(statistics.median(fw)), "min": min(fw),
                                      "max": max(fw)},
                    "simulation": s["heap_simulation"], "total": total - s["heap_free"],
                    "heapsize": HEAP, "connectors": connectors}
    finally:
        lab.close()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--connectors", type=int, default=1)
    p.add_argument("--samples", type=int, default=10)
    a = p.parse_args(argv)
    print(json.dumps(asyncio.run(probe(a.connectors, a.samples))))


if __name__ == "__main__":
    main()
