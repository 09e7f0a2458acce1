#!/usr/bin/env python3
"""An HTTP proxy that misbehaves on purpose, for testing retries and resumed reads.

Every FAIL_EVERY-th request is answered 503 without reaching the upstream; every CUT_EVERY-th GET
whose body is larger than 4 KiB is forwarded, then its body is cut off halfway and the connection
closed, as a dropped connection would. GET /__stats answers the counts as JSON.

usage: flaky_proxy.py LISTEN_PORT UPSTREAM_PORT FAIL_EVERY CUT_EVERY
"""
import http.client
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LISTEN, UPSTREAM, FAIL_EVERY, CUT_EVERY = (int(a) for a in sys.argv[1:5])
HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}
lock = threading.Lock()
stats = {"requests": 0, "failed": 0, "gets": 0, "cut": 0}


def count(key):
    with lock:
        stats[key] += 1
        return stats[key]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def relay(self):
        if self.path == "/__stats":
            body = json.dumps(stats).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length) if length else None
        if FAIL_EVERY and count("requests") % FAIL_EVERY == 0:
            count("failed")
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        conn = http.client.HTTPConnection("127.0.0.1", UPSTREAM, timeout=120)
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        cut = (
            self.command == "GET"
            and CUT_EVERY
            and len(data) > 4096
            and count("gets") % CUT_EVERY == 0
        )
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in HOP and k.lower() != "content-length":
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        if cut:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command == "HEAD":
            return
        if cut:
            count("cut")
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = relay


ThreadingHTTPServer(("127.0.0.1", LISTEN), Handler).serve_forever()
