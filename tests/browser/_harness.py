"""Browser-test harness: Debian's headless chromium via Playwright, a throw-away JupyterLab, screenshots.

Playwright's own browser download (`playwright install`) is never used. Nothing here writes into the
repository: JupyterLab's settings, workspaces, runtime files and notebook checkpoints all live under
the test's tmp folder, and autosave is off.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package
SERVER_START_S = 120  # JupyterLab on 2 shared cores takes ~10 s; generous for a loaded CI box

# User settings for the throw-away server, {plugin id: settings}.
LAB_SETTINGS = {
    # never write the notebook back to disk
    "@jupyterlab/docmanager-extension:plugin": {"autosave": False},
    # render every cell: with windowing, off-screen outputs (the widget) may never be attached
    "@jupyterlab/notebook-extension:tracker": {"windowingMode": "none"},
    # no news or update pop-ups (no network, and toasts cover the page in screenshots)
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False},
}


@contextmanager
def chromium_page() -> Iterator:
    """A page in a fresh headless chromium. Called inside the test body, so a missing chromium is a
    test failure (not a fixture error); UNCLIP_PROBE_NO_BROWSER=1 skips instead."""
    if os.environ.get("UNCLIP_PROBE_NO_BROWSER") == "1":
        pytest.skip("UNCLIP_PROBE_NO_BROWSER=1: browser tests skipped")
    if not CHROMIUM.exists():
        pytest.fail(f"The browser tests need Debian's chromium at {CHROMIUM}: install it with "
                    "`apt-get install chromium` (CI's .ci/run does), or set UNCLIP_PROBE_NO_BROWSER=1 to skip them.",
                    pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # --no-sandbox: CI and containers run as root, where chromium's sandbox refuses to start
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 1000})
        finally:
            browser.close()


def screenshot(page, tmp_path: Path, name: str) -> Path:
    """Save a screenshot to tmp_path/name, and also to $UNCLIP_PROBE_SCREENSHOTS/name when that is set."""
    out = tmp_path / name
    page.screenshot(path=str(out))
    folder = os.environ.get("UNCLIP_PROBE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / name))
    return out


@dataclass
class Lab:
    url: str  # http://127.0.0.1:PORT
    token: str
    log: Path

    def open_url(self, rel_path: str) -> str:
        return f"{self.url}/lab/tree/{rel_path}?token={self.token}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(lab: Lab, path: str, method: str = "GET") -> bytes:
    req = urllib.request.Request(f"{lab.url}{path}", method=method,
                                 headers={"Authorization": f"token {lab.token}"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.read()


@contextmanager
def jupyter_lab(root: Path, tmp: Path) -> Iterator[Lab]:
    """Run `jupyter lab` on a free localhost port over `root`; everything it writes goes under `tmp`."""
    settings = tmp / "lab-settings"
    for plugin, values in LAB_SETTINGS.items():
        package, name = plugin.split(":")
        f = settings / package / f"{name}.jupyterlab-settings"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(values))
    lab = Lab(f"http://127.0.0.1:{_free_port()}", secrets.token_hex(16), tmp / "jupyter.log")
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1",
           "--allow-root",  # CI containers run as root
           f"--port={lab.url.rsplit(':', 1)[1]}", "--ServerApp.port_retries=0",
           f"--ServerApp.token={lab.token}", f"--ServerApp.root_dir={root}",
           f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={tmp / 'workspaces'}",
           "--LabApp.extension_manager=readonly",  # no PyPI look-ups
           # an absolute dir replaces the .ipynb_checkpoints folder next to each notebook
           f"--FileCheckpoints.checkpoint_dir={tmp / 'checkpoints'}"]
    with open(lab.log, "wb") as log:
        # own session, so teardown can signal the server and everything it spawned in one go
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp / "runtime")},  # connection files
                                start_new_session=True)
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jupyter lab exited with {proc.returncode}:\n{lab.log.read_text()[-3000:]}", pytrace=False)
            try:
                _api(lab, "/api/status")
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"jupyter lab did not answer in {SERVER_START_S} s:\n{lab.log.read_text()[-3000:]}",
                                pytrace=False)
                time.sleep(0.5)
        yield lab
    finally:
        _stop(lab, proc)


def _stop(lab: Lab, proc: subprocess.Popen) -> None:
    # Kernels run in their own sessions (jupyter_client), so ask the server to shut them down first;
    # then signal the server's process group, escalating to SIGKILL.
    try:
        _api(lab, "/api/shutdown", method="POST")
        proc.wait(timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=10)
            break
        except subprocess.TimeoutExpired:
            continue
