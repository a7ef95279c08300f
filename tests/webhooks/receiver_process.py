"""A webhook receiver as its own process (argv: port ledger secret delay_s): verifies each
message with standardwebhooks' own Webhook.verify, records its webhook-id in a SQLite ledger
(every receipt, and the de-duplicated set), then waits ``delay_s`` before answering 204 — so a
test can kill it between receiving a message and acknowledging it."""

from __future__ import annotations

import sqlite3
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import standardwebhooks

port, ledger, secret, delay_s = int(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4])
verifier = standardwebhooks.Webhook(secret)


def record(message_id: str) -> None:
    conn = sqlite3.connect(ledger, timeout=10, isolation_level=None)
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS receipts (id TEXT NOT NULL)")
        conn.execute("CREATE TABLE IF NOT EXISTS seen (id TEXT PRIMARY KEY)")
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO receipts VALUES (?)", (message_id,))
        conn.execute("INSERT OR IGNORE INTO seen VALUES (?)", (message_id,))
        conn.execute("COMMIT")
    finally:
        conn.close()


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        try:
            verifier.verify(body, dict(self.headers.items()))
        except standardwebhooks.WebhookVerificationError:
            self.send_response(400)
            self.send_header("content-length", "0")
            self.end_headers()
            return
        record(self.headers["webhook-id"])
        time.sleep(delay_s)
        self.send_response(204)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
server.serve_forever()
