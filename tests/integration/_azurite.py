"""Start Azurite's Blob service (a real Azure Storage emulator) on a free loopback port.

``azurite_server(location)`` yields an :class:`Azurite` with the endpoint and the well-known
development account, and stops the server on exit. The ``azurite-blob`` command is taken from
``PATH``, else from ``.cache/azurite/`` in the repository, where it is installed with npm on
first use (``LAKEPORT_AZURITE_CACHE`` picks another folder). Without node/npm the tests skip,
or fail under ``LAKEPORT_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from conftest import require_service
from servers import free_port, running

# Azurite's published development account (the same on every machine, never a real secret).
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

AZURITE_PACKAGE = "azurite@3"
INSTALL_TIMEOUT_S = 300
START_TIMEOUT_S = 30
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Azurite:
    """A running Azurite Blob service."""

    port: int
    account: str = DEV_ACCOUNT
    key: str = DEV_KEY

    @property
    def account_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{self.account}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={self.account};AccountKey={self.key};"
            f"BlobEndpoint={self.account_url};"
        )


def cache_dir() -> Path:
    return Path(os.environ.get("LAKEPORT_AZURITE_CACHE") or REPO_ROOT / ".cache" / "azurite")


def find_azurite_blob() -> str | None:
    """The ``azurite-blob`` command on PATH or in the cache folder, if any."""
    found = shutil.which("azurite-blob")
    if found:
        return found
    cached = cache_dir() / "node_modules" / ".bin" / "azurite-blob"
    return str(cached) if cached.exists() else None


def install_azurite() -> str:
    """Install Azurite into the cache folder with npm (once per machine); return the command."""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        require_service("Azurite", "azurite-blob is not installed and node/npm are missing "
                        "(npm install -g azurite)")
    target = cache_dir()
    target.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(
            [npm, "install", "--prefix", str(target), "--no-audit", "--no-fund",
             "--loglevel=error", AZURITE_PACKAGE],
            check=True, capture_output=True, timeout=INSTALL_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        require_service("Azurite", f"npm install {AZURITE_PACKAGE} took over {INSTALL_TIMEOUT_S}s")
    except subprocess.CalledProcessError as exc:
        tail = exc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        require_service("Azurite", f"npm install {AZURITE_PACKAGE} failed: {tail[0]}")
    found = find_azurite_blob()
    if found is None:
        require_service("Azurite", f"npm install {AZURITE_PACKAGE} left no azurite-blob "
                        f"in {target}")
    return found


@contextlib.contextmanager
def azurite_server(location: Path) -> Iterator[Azurite]:
    """Run ``azurite-blob`` on a free port with its data in ``location``."""
    command = find_azurite_blob() or install_azurite()
    port = free_port()
    process = subprocess.Popen(
        [command, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(location),
         "--silent", "--skipApiVersionCheck", "--loose", "--disableTelemetry"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    with running(process, port, "Azurite", command, start_timeout=START_TIMEOUT_S):
        yield Azurite(port)
