"""A tiny in-process HTTP server on 127.0.0.1 that answers like SGLang's native API and
an OpenAI-compatible (vLLM) server, for tests that need no model: it records every
request's path, headers and body, and can demand an API key as ``--api-key`` does
(401 without ``Authorization: Bearer <key>``).

Answers: ``/generate`` returns ``text`` (``"The answer is \\boxed{2}."`` by default)
with ``output_ids`` ``[1, 2, 3]`` and a stop finish, or for a scoring request
(``return_logprob`` with ``max_new_tokens: 0``) one logprob of -0.1 per scored token;
``/v1/completions`` the same as a completions choice; ``/get_model_info``,
``/v1/models`` and ``/health`` what the engines read. With ``malformed_scores=n`` the
first n scoring answers are malformed (one logprob short, as a server mid-failure might
send): an engine must retry them, never use them.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class StubServer:
    """``with StubServer(api_key="k") as s: s.url``; ``s.requests`` lists
    ``{"path", "headers", "body"}`` of every request received."""

    def __init__(self, api_key: str | None = None, served: tuple[str, ...] = ("stub-model",),
                 text: str = "The answer is \\boxed{2}.", malformed_scores: int = 0):
        self.api_key = api_key
        self.malformed_scores = malformed_scores  # scoring answers still to send malformed
        self.served = served
        self.text = text
        self.requests: list[dict] = []
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> "StubServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _handler(self):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet: tests read `requests`
                pass

            def _reply(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, body: dict | None) -> None:
                stub.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                if self.path == "/health":
                    return self._reply(200, {})
                if stub.api_key and self.headers.get("Authorization") != f"Bearer {stub.api_key}":
                    return self._reply(401, {"error": "Unauthorized"})
                if self.path == "/get_model_info":
                    return self._reply(200, {"model_path": stub.served[0]})
                if self.path == "/v1/models":
                    return self._reply(200, {"data": [{"id": m, "max_model_len": 4096} for m in stub.served]})
                if self.path == "/generate":
                    return self._reply(200, stub._generate(body or {}))
                if self.path == "/v1/completions":
                    return self._reply(200, stub._completions(body or {}))
                return self._reply(404, {"error": self.path})

            def do_GET(self):
                self._handle(None)

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                self._handle(json.loads(self.rfile.read(n) or b"{}"))

        return Handler

    def _take_malformed(self) -> bool:
        if self.malformed_scores > 0:
            self.malformed_scores -= 1
            return True
        return False

    def _generate(self, body: dict) -> dict:
        ids = body.get("input_ids") or []
        if body.get("return_logprob") and (body.get("sampling_params") or {}).get("max_new_tokens") == 0:
            start = int(body.get("logprob_start_len", 0))
            entries = [[None, ids[start], None]] + [[-0.1, t, None] for t in ids[start + 1:]]
            if self._take_malformed():
                entries = entries[:-1]
            return {"text": "", "output_ids": [], "meta_info": {"input_token_logprobs": entries,
                                                                "finish_reason": {"type": "length"}}}
        return {"text": self.text, "output_ids": [1, 2, 3],
                "meta_info": {"finish_reason": {"type": "stop", "matched": 2}, "cached_tokens": 0}}

    def _completions(self, body: dict) -> dict:
        prompt = body.get("prompt") or []
        if body.get("prompt_logprobs") is not None:
            entries = [None] + [{str(t): {"logprob": -0.1}} for t in prompt[1:]]
            if self._take_malformed():
                entries = entries[:-1]
            return {"choices": [{"text": "x", "token_ids": [5], "finish_reason": "length",
                                 "prompt_logprobs": entries}]}
        return {"choices": [{"text": self.text, "token_ids": [1, 2, 3, 2], "finish_reason": "stop",
                             "stop_reason": None}]}
