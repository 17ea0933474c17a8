"""A stand-in workload for docker-compose.yml: answers every request with 200 and a JSON echo
of what its segward sidecar forwarded (method, path, x-spiffe-id, x-forwarded-client-cert); `?sleep_ms=N` delays the answer.

It listens on 127.0.0.1:8080 only: the sidecar sharing its network namespace is the one way
in. Usage: python echo.py NAME
"""

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

NAME = sys.argv[1] if len(sys.argv) > 1 else "workload"


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self):
        # `?sleep_ms=N` (at most 10 s): a slow request, to watch a sidecar drain it on stop.
        delay = parse_qs(urlsplit(self.path).query).get("sleep_ms", ["0"])[0]
        time.sleep(min(int(delay) if delay.isdigit() else 0, 10_000) / 1000)
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            self.close_connection = True  # the body is not read: do not reuse the connection
        else:
            self.rfile.read(int(self.headers.get("content-length") or 0))
        body = json.dumps(
            {
                "service": NAME,
                "method": self.command,
                "path": self.path,
                "x-spiffe-id": self.headers.get("x-spiffe-id"),
                "x-forwarded-client-cert": self.headers.get("x-forwarded-client-cert"),
            }
        ).encode() + b"\n"
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = answer

    def log_message(self, format, *args):
        who = self.headers.get("x-spiffe-id", "-") if self.headers else "-"
        sys.stderr.write(f"{NAME}: {format % args} from {who}\n")


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", 8080), Echo).serve_forever()
