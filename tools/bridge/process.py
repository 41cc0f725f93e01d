"""One bridge instance as a process (`python3 -m tools.bridge ...`), for the tests and the bench:
started with its /healthz awaited, stopped with SIGTERM, or killed with SIGKILL mid-traffic."""
import asyncio
import os
import signal
import subprocess
import sys

from tools.broker import file_tail, free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def bridge_args(broker, ca, cert, key, csms, *, shard=None, http=None, auth=None,
                csms_ca=None, certs=None, extra=()):
    """The command line; `broker` and `http` are "HOST:PORT"."""
    args = [sys.executable, "-m", "tools.bridge", "--broker", broker, "--ca", ca,
            "--cert", cert, "--key", key, "--csms", csms]
    for flag, value in (("--csms-ca", csms_ca), ("--auth", auth), ("--certs", certs),
                        ("--shard", shard), ("--http", http)):
        if value is not None:
            args += [flag, value]
    return args + list(extra)


class BridgeProcess:
    """`await bridge.start()`; `bridge.kill()` (SIGKILL); `await bridge.stop()` (SIGTERM).
    Its JSON log lines go to `log_path` (appended over restarts)."""

    def __init__(self, log_path, broker, ca, cert, key, csms, spawn=subprocess.Popen,
                 **options):
        self.spawn = spawn  # subprocess.Popen, or the bench's (stopped with it)
        self.http_port = free_port()
        self.args = bridge_args(broker, ca, cert, key, csms,
                                http="127.0.0.1:%d" % self.http_port, **options)
        self.log_path = log_path
        self.proc = None

    async def start(self, timeout=20):
        with open(self.log_path, "ab") as log:
            self.proc = self.spawn(self.args, cwd=ROOT, stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=log)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while await self.get("/healthz") != 200:
            if self.proc.poll() is not None or loop.time() > deadline:
                self.kill()
                raise RuntimeError("bridge not healthy:\n" + self.log_tail())
            await asyncio.sleep(0.05)
        return self

    async def get(self, path):
        """The HTTP status of GET `path`, None if not listening."""
        status, _ = await self.fetch(path)
        return status

    async def fetch(self, path):
        """(status, body text) of GET `path`; (None, None) if not listening."""
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.http_port)
        except OSError:
            return None, None
        try:
            writer.write(("GET %s HTTP/1.0\r\n\r\n" % path).encode())
            data = await reader.read()
        finally:
            writer.close()
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split()[1]), body.decode()

    async def metrics(self):
        """/metrics as {name or name{labels}: value}."""
        _, body = await self.fetch("/metrics")
        out = {}
        for line in (body or "").splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def kill(self):
        """SIGKILL: nothing flushed or closed by the bridge (the kernel closes its sockets)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    async def stop(self, timeout=10):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.to_thread(self.proc.wait), timeout)
        except asyncio.TimeoutError:
            self.kill()

    def log_tail(self, limit=4000):
        return file_tail(self.log_path, limit)
