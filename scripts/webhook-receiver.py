#!/usr/bin/env python3
"""A tiny webhook receiver for the demo (Python 3 standard library only).

    SKYCAST_WEBHOOK_SECRET_FILE=FILE python3 scripts/webhook-receiver.py [--port-file F] HOST PORT

Listens on HOST:PORT (plain HTTP: the publisher accepts http webhooks to loopback
only) and answers every POST with 204 once it has printed one line for it:

    <time> <event> kind=<kind> player=<player_id> shop=<shop> alert=#<id> delivery=<id> signature=valid|INVALID|missing

then the alert's English text on a second line. The signature check is the
documented one: the X-Skycast-Signature header must be
`sha256=<lowercase hex of HMAC-SHA256(secret, exact body bytes)>`, the secret
being the text `skycast-publisher webhook add` printed (`skw_...`). The secret is
read from the file named by SKYCAST_WEBHOOK_SECRET_FILE (or SKYCAST_WEBHOOK_SECRET),
at each request, so it can be written after the receiver starts; it is never
printed. Without a secret every delivery shows `signature=unchecked`.

A message whose signature does not match is still answered 204 (so the demo
shows it rather than the publisher retrying it) but is marked INVALID.
"""

import hashlib
import hmac
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 1 << 20


def secret():
    path = os.environ.get("SKYCAST_WEBHOOK_SECRET_FILE")
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read().strip()
            if text:
                return text
        except OSError:
            pass
    return os.environ.get("SKYCAST_WEBHOOK_SECRET", "").strip() or None


def check(header, body):
    key = secret()
    if key is None:
        return "unchecked"
    if not header:
        return "missing"
    want = "sha256=" + hmac.new(key.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return "valid" if hmac.compare_digest(header.strip(), want) else "INVALID"


class Handler(BaseHTTPRequestHandler):
    server_version = "skycast-demo-webhook-receiver"

    def do_POST(self):
        try:
            length = int(self.headers.get("Content-Length") or "0")
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self.send_error(413 if length > MAX_BODY else 400)
            return
        body = self.rfile.read(length)
        sig = check(self.headers.get("X-Skycast-Signature"), body)
        try:
            msg = json.loads(body.decode("utf-8"))
            alert = msg.get("alert") or {}
            line = "%s kind=%s player=%s shop=%s alert=#%s delivery=%s" % (
                msg.get("event", "?"),
                alert.get("kind", "?"),
                alert.get("player_id", "?"),
                alert.get("shop", "?"),
                alert.get("id", "?"),
                msg.get("delivery", "?"),
            )
            text = alert.get("text_en") or ""
        except (ValueError, AttributeError):
            line, text = "unparsable body (%d bytes)" % len(body), ""
        stamp = time.strftime("%H:%M:%S", time.gmtime())
        print("%sZ %s %s signature=%s" % (stamp, self.path, line, sig), flush=True)
        if text:
            print("    %s" % text, flush=True)
        self.send_response(204)
        self.end_headers()

    def do_GET(self):
        # A liveness check for the demo script.
        body = b"skycast demo webhook receiver: POST alerts here\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        pass  # one line per delivery, printed above, is enough


def main(argv):
    port_file = None
    if len(argv) >= 2 and argv[0] == "--port-file":
        port_file, argv = argv[1], argv[2:]
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    server = ThreadingHTTPServer((argv[0], int(argv[1])), Handler)
    host, port = server.server_address[:2]
    if port_file:
        with open(port_file + ".tmp", "w", encoding="utf-8") as f:
            f.write("%d\n" % port)
        os.replace(port_file + ".tmp", port_file)
    print("listening on http://%s:%d/ (signature check: %s)" % (
        host, port, "on" if secret() else "on once the secret is in SKYCAST_WEBHOOK_SECRET_FILE"), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
