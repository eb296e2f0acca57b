"""A real, throw-away Orthanc PACS for the tests: generated config, free loopback ports, own storage.

Orthanc (Debian ``orthanc``) with its DICOMweb plugin (``orthanc-dicomweb``) is
started with authentication on, remote access off and its storage in a temporary
folder; it is stopped (and its folder left to pytest's tmp cleanup) after.
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

log = logging.getLogger(__name__)

PLUGIN_DIRS = (Path("/usr/share/orthanc/plugins"), Path("/usr/lib/orthanc"))
USER, PASSWORD = "cxr-test", "pacs-password-not-secret"


def orthanc_binary() -> str | None:
    return shutil.which("Orthanc") or (str(Path("/usr/sbin/Orthanc")) if Path("/usr/sbin/Orthanc").exists() else None)


def dicomweb_plugin() -> Path | None:
    for folder in PLUGIN_DIRS:
        hits = sorted(folder.glob("libOrthancDicomWeb.so*")) if folder.is_dir() else []
        if hits:
            return hits[0]
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Orthanc:
    """A running Orthanc: its REST root, DICOMweb root and credentials."""

    process: subprocess.Popen
    http_port: int
    dicom_port: int
    folder: Path

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.rest_url}/dicom-web"

    @property
    def auth(self) -> str:
        return f"{USER}:{PASSWORD}"

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.rest_url, auth=(USER, PASSWORD), timeout=30)

    def upload(self, data: bytes) -> bool:
        """Store one DICOM file through the REST API; False when Orthanc refuses it."""
        with self.client() as c:
            r = c.post("/instances", content=data)
        return r.status_code == 200

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_orthanc(folder: Path, timeout: float = 60.0) -> Orthanc:
    """Write a config into ``folder`` and start Orthanc on free loopback ports; wait until it answers."""
    binary, plugin = orthanc_binary(), dicomweb_plugin()
    if binary is None or plugin is None:
        raise FileNotFoundError("Orthanc or its DICOMweb plugin is not installed")
    folder.mkdir(parents=True, exist_ok=True)
    http_port, dicom_port = free_port(), free_port()
    config = {
        "Name": "CXR-TEST-PACS",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "storage"),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": "CXRTEST",
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {USER: PASSWORD},
        "Plugins": [str(plugin)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "HttpThreadsCount": 4,
        "ConcurrentJobs": 1,
        "StorageCompression": False,
        "SaveJobs": False,
    }
    cfg = folder / "orthanc.json"
    cfg.write_text(json.dumps(config, indent=2))
    logfile = open(folder / "orthanc.log", "wb")  # noqa: SIM115 - kept open for the process's lifetime
    proc = subprocess.Popen([binary, str(cfg)], stdout=logfile, stderr=subprocess.STDOUT, cwd=folder)
    server = Orthanc(proc, http_port, dicom_port, folder)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Orthanc exited at start: {(folder / 'orthanc.log').read_text()[-2000:]}")
        try:
            with server.client() as c:
                if c.get("/plugins/dicom-web").status_code == 200:
                    return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"Orthanc did not answer within {timeout:.0f} s")
