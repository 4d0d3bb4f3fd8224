"""Start moto's S3 server (a real HTTP server) on a free loopback port for integration tests.

``moto_server()`` yields the endpoint URL (``http://127.0.0.1:PORT``) and stops the server on
exit. ``auth_actions`` turns on moto's credential checks after that many unauthenticated
requests (moto's ``INITIAL_NO_AUTH_ACTION_COUNT``), so a wrong key or secret is rejected
the way AWS rejects it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator

from conftest import require_service
from servers import free_port, running

# moto's default credentials: any key is accepted unless credential checks are on.
MOTO_KEY = "testing"
MOTO_SECRET = "testing"
MOTO_REGION = "us-east-1"


@contextlib.contextmanager
def moto_server(auth_actions: int | None = None) -> Iterator[str]:
    """Run ``python -m moto.server`` on a free port; yield its endpoint URL."""
    try:
        import moto.server  # noqa: F401
    except ImportError:
        require_service("moto S3 server", "moto[server] is not installed")
    port = free_port()
    env = dict(os.environ, AWS_ACCESS_KEY_ID=MOTO_KEY, AWS_SECRET_ACCESS_KEY=MOTO_SECRET,
               AWS_DEFAULT_REGION=MOTO_REGION)
    if auth_actions is not None:
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(auth_actions)
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    with running(process, port, "moto S3 server", "moto.server", start_timeout=20):
        yield f"http://127.0.0.1:{port}"
