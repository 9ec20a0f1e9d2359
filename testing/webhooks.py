"""A webhook receiver on 127.0.0.1, written as a tenant would write one: every delivery's signature is checked
with the Standard Webhooks library, and a ``webhook-id`` seen before is dropped (a replay)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook, WebhookVerificationError

from testing.servers import free_port


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    verified: bool
    status: int  # what the receiver answered


@dataclass
class Receiver:
    """Verifies with ``secret``; answers 503 to its first ``lose_answers`` verified deliveries *after* acting on
    them (as if the answer were lost on the way back), so the same delivery comes again and is dropped."""

    secret: str
    port: int = field(default_factory=free_port)
    lose_answers: int = 0
    received: list[Received] = field(default_factory=list)
    acted_on: list[dict] = field(default_factory=list)  # each event once, in arrival order
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/restyle?tenant=alice"

    def handle(self, headers: dict[str, str], body: bytes) -> int:
        try:
            payload = Webhook(self.secret).verify(body, headers)
        except WebhookVerificationError:
            with self._lock:
                self.received.append(Received(headers, body, False, 401))
            return 401
        with self._lock:
            seen = {r.headers["webhook-id"] for r in self.received if r.verified}
            if headers["webhook-id"] not in seen:
                self.acted_on.append(payload)
            status = 503 if self.lose_answers > 0 else 200
            self.lose_answers -= 1
            self.received.append(Received(headers, body, True, status))
        return status

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                status = receiver.handle({k.lower(): v for k, v in self.headers.items()}, body)
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
