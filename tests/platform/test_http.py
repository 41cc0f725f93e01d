"""chargepoint.platform.http on the device twin against a local HTTP server: downloads with
Content-Length, chunked and redirected, the SHA-256 of what came, uploads, and failures."""
import hashlib
import http.server
import os
import subprocess
import threading

import pytest

from conftest import ROOT
from tools import twin

pytestmark = pytest.mark.usefixtures("twins")
BODY = bytes(range(256)) * 37 + b"tail"  # 9476 bytes: several reads, not a multiple of them


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    received = {}

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802
        if self.path == "/fw.bin":
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY)
        elif self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(BODY), 1000):
                part = BODY[i:i + 1000]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:%d/fw.bin" % self.server.server_port)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/short":
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY) + 10))
            self.end_headers()
            self.wfile.write(BODY)
            self.close_connection = True
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

    def _store(self):
        n = int(self.headers["Content-Length"])
        Handler.received[(self.command, self.path)] = self.rfile.read(n)
        self.send_response(201 if self.command == "PUT" else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_PUT = do_POST = _store  # noqa: N815


@pytest.fixture
def server():
    s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=s.serve_forever, daemon=True).start()
    yield "http://127.0.0.1:%d" % s.server_port
    s.shutdown()


def on_twin(code, cwd):
    r = subprocess.run([twin.ensure(stock=True), "-X", "heapsize=110000", "-c",
                        "from chargepoint.platform import http\n" + code], cwd=str(cwd),
                       capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, MICROPYPATH=".frozen:%s/lib" % ROOT))
    return r.stdout.strip() + r.stderr.strip()


@pytest.mark.parametrize("path", ["/fw.bin", "/chunked", "/moved"])
def test_download_streams_to_a_file_with_its_sha256(server, tmp_path, path):
    out = on_twin("print(http.download(%r, 'fw.part'))" % (server + path), tmp_path)
    assert out == "(%d, '%s')" % (len(BODY), hashlib.sha256(BODY).hexdigest())
    assert (tmp_path / "fw.part").read_bytes() == BODY


@pytest.mark.parametrize("path,error", [("/missing", "HttpError: GET: HTTP 404"),
                                        ("/short", "HttpError: the body ended 10 bytes short")])
def test_download_failures_raise(server, tmp_path, path, error):
    out = on_twin("try:\n http.download(%r, 'fw.part')\nexcept http.HttpError as e:\n"
                  " print('HttpError:', e)" % (server + path), tmp_path)
    assert out == error


def test_nothing_listening_is_an_os_error(tmp_path):
    out = on_twin("try:\n http.download('http://127.0.0.1:1/x', 'f')\nexcept OSError as e:\n"
                  " print('OSError')", tmp_path)
    assert out == "OSError"


@pytest.mark.parametrize("method,status", [("PUT", 201), ("POST", 200)])
def test_upload_sends_the_file_as_the_body(server, tmp_path, method, status):
    (tmp_path / "log.txt").write_bytes(BODY)
    out = on_twin("print(http.upload(%r, 'log.txt', %r))" % (server + "/up", method), tmp_path)
    assert out == str(status)
    assert Handler.received[(method, "/up")] == BODY
