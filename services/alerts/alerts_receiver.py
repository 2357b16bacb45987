#!/usr/bin/env python3
"""alerts_receiver.py - the real servers the alerts tests and `haven-bench alerts` deliver to.

    alerts_receiver.py DIR CERT KEY SECRET

An SMTP server (aiosmtpd, Debian's python3-aiosmtpd) that requires STARTTLS with CERT/KEY
before MAIL FROM, and an HTTP server (http.server) for webhooks that checks each body's
X-Haven-Signature (HMAC-SHA256 under SECRET) and answers 401 when it does not match. Both listen
on 127.0.0.1 on ports of their choosing, written as "SMTP_PORT WEBHOOK_PORT" to DIR/ports once
they accept. Every message received is appended as one JSON line to DIR/received.jsonl:
{"via": "smtp"|"webhook", "t": receipt time in Unix ms, "key": the idempotency key
(Idempotency-Key header or Message-ID), "sig_ok": bool, "tls": bool, "rcpt": [...],
"path": ..., "body": text}.  Webhook path /fail-once/... answers 503 the first time a key is
seen, to test retries. Runs until killed.
"""
import hashlib
import hmac
import json
import os
import re
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

DIR, CERT, KEY, SECRET = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].encode()
LOCK = threading.Lock()
SEEN_FAIL = set()


def record(entry):
    entry["t"] = int(time.time() * 1000)
    entry["t_us"] = int(time.time() * 1000000)
    with LOCK, open(os.path.join(DIR, "received.jsonl"), "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")
        f.flush()


class Mail:
    async def handle_DATA(self, server, session, envelope):
        text = envelope.content.decode("utf-8", "replace")
        m = re.search(r"^Message-ID: <([^@>]+)@haven>", text, re.M | re.I)
        record({"via": "smtp", "key": m.group(1) if m else "", "sig_ok": True,
                "tls": session.ssl is not None, "rcpt": list(envelope.rcpt_tos),
                "path": "", "body": text})
        return "250 OK"


class Hook(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        want = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
        got = self.headers.get("X-Haven-Signature", "")
        ok = hmac.compare_digest(want, got)
        key = self.headers.get("Idempotency-Key", "")
        code = 200 if ok else 401
        if ok and self.path.startswith("/fail-once") and key not in SEEN_FAIL:
            SEEN_FAIL.add(key)
            code = 503
        record({"via": "webhook", "key": key, "sig_ok": ok, "tls": False, "rcpt": [],
                "path": self.path, "code": code, "body": body.decode("utf-8", "replace")})
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()


def main():
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(CERT, KEY)
    smtp = Controller(Mail(), hostname="127.0.0.1", port=0, tls_context=ctx,
                      require_starttls=True, server_hostname="localhost")
    # aiosmtpd 1.4 picks no port for 0 by itself: find a free one first.
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    smtp.port = s.getsockname()[1]
    s.close()
    smtp.start()
    # The sender sends a batch at once: a listen backlog of 5 (the default) would drop
    # connections and cost each a 1 s SYN retry.
    ThreadingHTTPServer.request_queue_size = 128
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    tmp = os.path.join(DIR, "ports.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("%d %d\n" % (smtp.port, httpd.server_address[1]))
    os.rename(tmp, os.path.join(DIR, "ports"))
    try:
        httpd.serve_forever()
    finally:
        smtp.stop()


if __name__ == "__main__":
    main()
