"""Tests of the service: run them with ``python -m pytest test_app.py``."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

from main import make_server, respond


def test_root_answers_with_the_greeting() -> None:
    assert respond("/", {"greeting": "hi"}) == (200, {"message": "hi", "status": "ok"})
    assert respond("/nothing", {})[0] == 404


def test_the_server_answers_over_http() -> None:
    server = make_server({"port": 0, "greeting": "hello"}, host="127.0.0.1")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with urllib.request.urlopen(base + "/", timeout=5) as response:
            assert response.status == 200
            assert json.loads(response.read()) == {"message": "hello", "status": "ok"}
        try:
            urllib.request.urlopen(base + "/missing", timeout=5)
        except urllib.error.HTTPError as error:
            assert error.code == 404
        else:
            raise AssertionError("expected 404 for /missing")
    finally:
        server.shutdown()
        server.server_close()
