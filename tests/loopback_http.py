"""A JSON-over-HTTP server on 127.0.0.1 standing in for Home Assistant or a webhook in hand-off tests."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class JsonServer:
    """Records each POST as (path, Authorization header, JSON body) in ``seen`` and answers the next
    (status, JSON) of ``answers``, or ``default`` once they run out."""

    def __init__(self, answers=(), default: tuple[int, object] | None = None) -> None:
        self.answers, self.default, self.seen = list(answers), default, []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.seen.append((self.path, self.headers.get("Authorization"), body))
                status, answer = owner.answers.pop(0) if owner.answers else owner.default
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self._srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._srv.server_address[1]}"
        threading.Thread(target=self._srv.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._srv.shutdown()
        self._srv.server_close()


def home_assistant_answer(kind: str, speech: str) -> dict:
    """Home Assistant's documented /api/conversation/process response."""
    return {"response": {"response_type": kind, "language": "en", "data": {},
                         "speech": {"plain": {"speech": speech, "extra_data": None}}}, "conversation_id": "1"}
