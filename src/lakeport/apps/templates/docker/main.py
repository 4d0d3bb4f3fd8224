"""A small HTTP service: ``GET /`` answers with a JSON greeting, ``GET /health`` with ok.

Docker apps read and write no data streams: they are containers that lakeport runs and
deploys with the settings of their app.yaml (ports, volumes, environment variables).
The configuration comes from ``LAKEPORT_APP_CONFIGURATION`` (set by ``lakeport app run``),
else from ``defaults.configuration`` in app.yaml.

Run it with ``lakeport app run .`` and try ``curl http://localhost:8080/``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

logger = logging.getLogger("service")


def load_configuration() -> dict[str, Any]:
    """``LAKEPORT_APP_CONFIGURATION`` (JSON), else ``defaults.configuration`` of app.yaml."""
    text = os.environ.get("LAKEPORT_APP_CONFIGURATION")
    if text:
        return json.loads(text)
    import yaml  # installed with lakeport; only needed when run without `lakeport app run`

    manifest = yaml.safe_load((Path(__file__).parent / "app.yaml").read_text(encoding="utf-8"))
    return dict(manifest.get("defaults", {}).get("configuration", {}))


def respond(path: str, configuration: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """The status and JSON body for a GET of ``path``."""
    if path == "/":
        return 200, {"message": configuration.get("greeting", "Hello"), "status": "ok"}
    if path == "/health":
        return 200, {"status": "ok"}
    return 404, {"error": f"no such path: {path}"}


def make_server(configuration: dict[str, Any], host: str = "0.0.0.0") -> ThreadingHTTPServer:
    """The HTTP server, bound to ``configuration["port"]`` (not serving yet)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = respond(self.path.split("?", 1)[0], configuration)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            logger.info("%s %s", self.address_string(), format % args)

    return ThreadingHTTPServer((host, int(configuration.get("port", 8080))), Handler)


def main() -> None:
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = make_server(load_configuration())

    def stop(signum: int, frame: object) -> None:
        logger.info("%s received, stopping", signal.Signals(signum).name)
        threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    logger.info("listening on port %d", server.server_address[1])
    print(f"listening on port {server.server_address[1]}", flush=True)
    server.serve_forever()
    server.server_close()
    print("stopped", flush=True)


if __name__ == "__main__":
    main()
