#!/usr/bin/env python3
"""Local stand-ins for Mux, Stripe, Gemini, Google and Resend while fuzzing.

scripts/fuzz.sh points the API's *_BASE_URL settings here so that no
operation answers 503 "not configured" and nothing leaves the machine. The
answers are minimal but well formed; unknown things are 404s, as upstream.
Usage: fuzz_fakes.py PORT
"""
import json
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Fake(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, status, body=None, ctype="application/json"):
        data = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        n = int(self.headers.get("content-length") or 0)
        return self.rfile.read(n) if n else b""

    def route(self, method):
        self.body()
        p = self.path.split("?")[0]
        # Mux
        if method == "POST" and p == "/video/v1/uploads":
            return self.send(201, {"data": {"id": "fuzz-upload", "url": "https://storage.example/fuzz", "status": "waiting"}})
        if method == "GET" and p == "/video/v1/assets":
            return self.send(200, {"data": []})
        if p.startswith("/video/v1/"):
            return self.send(404, {"error": {"type": "not_found", "messages": ["Not found"]}})
        if re.fullmatch(r"/[^/]+/(high|medium|low)\.mp4", p):
            return self.send(404, {"error": "not found"})
        # Gemini
        if p.endswith(":generateContent"):
            return self.send(200, {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hola"}]}, "index": 0}]})
        if p.endswith(":streamGenerateContent"):
            chunk = {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hola"}]}, "index": 0, "finishReason": "STOP"}]}
            return self.send(200, f"data: {json.dumps(chunk)}\r\n\r\n".encode(), "text/event-stream")
        # Stripe
        if method == "POST" and p == "/v1/customers":
            return self.send(200, {"id": "cus_fuzz", "object": "customer"})
        if method == "POST" and p == "/v1/checkout/sessions":
            return self.send(200, {"id": "cs_fuzz", "object": "checkout.session", "url": "https://checkout.example/cs_fuzz"})
        if method == "POST" and p == "/v1/billing_portal/sessions":
            return self.send(200, {"id": "bps_fuzz", "object": "billing_portal.session", "url": "https://billing.example/bps_fuzz"})
        if p.startswith("/v1/"):
            return self.send(404, {"error": {"type": "invalid_request_error", "message": "No such object"}})
        # Resend
        if p.startswith("/emails"):
            return self.send(200, {"id": "email-fuzz", "data": []})
        # Google
        if p in ("/token", "/userinfo"):
            return self.send(400, {"error": "invalid_grant"})
        return self.send(404, {"error": "not found"})

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def do_DELETE(self):
        self.route("DELETE")

    def do_PATCH(self):
        self.route("PATCH")

    def do_PUT(self):
        self.route("PUT")


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Fake).serve_forever()
