"""Open a page in headless Chromium over the DevTools protocol and collect what went wrong.

A small CDP client on `websockets` (sync API): start `chromium --headless
--remote-debugging-port=0`, read the port from DevToolsActivePort, open a tab, enable the
Runtime, Log and Page domains, load the page, then report console errors, uncaught
exceptions, log errors and dialogs (dismissed, so an alert() cannot block the page),
evaluate expressions and take a full-page screenshot. Console
messages come from the protocol events, not from scraping Chromium's stderr.
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import time
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--remote-debugging-port=0")


def chromium_binary() -> str | None:
    return next((path for path in map(shutil.which, CHROMIUM_NAMES) if path), None)


class Chromium:
    """One headless Chromium with one tab; use as a context manager."""

    def __init__(self, profile_dir: Path, timeout_s: float = 60.0):
        self.profile_dir = profile_dir
        self.timeout_s = timeout_s
        self.ids = itertools.count(1)
        self.events: list[dict] = []

    def __enter__(self) -> "Chromium":
        from websockets.sync.client import connect

        binary = chromium_binary()
        if binary is None:
            raise RuntimeError("no chromium binary on PATH")
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        self.log = (self.profile_dir / "chromium.log").open("wb")
        self.process = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={self.profile_dir}", "about:blank"],
                                        stdout=self.log, stderr=subprocess.STDOUT)
        port, path = self._devtools_endpoint()
        self.socket = connect(f"ws://127.0.0.1:{port}{path}", max_size=None, open_timeout=self.timeout_s)
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            self.send(f"{domain}.enable", session=True)
        return self

    def __exit__(self, *exc_info) -> None:
        try:
            self.socket.close()
        finally:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.log.close()

    def _devtools_endpoint(self) -> tuple[str, str]:
        marker = self.profile_dir / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.process.returncode}; see {self.log.name}")
            lines = marker.read_text().split() if marker.exists() else []
            if len(lines) == 2:
                return lines[0], lines[1]
            time.sleep(0.1)
        raise TimeoutError(f"chromium gave no DevTools port within {self.timeout_s} s")

    def send(self, method: str, params: dict | None = None, session: bool = False) -> dict:
        """Call a protocol method and return its result; events that arrive meanwhile are kept."""
        message = {"id": next(self.ids), "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self.session
        self.socket.send(json.dumps(message))
        while True:
            reply = self._receive()
            if reply.get("id") == message["id"]:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def _receive(self) -> dict:
        reply = json.loads(self.socket.recv(timeout=self.timeout_s))
        if "method" in reply:
            self.events.append(reply)
        if reply.get("method") == "Page.javascriptDialogOpening":  # an alert() would block the page
            self.socket.send(json.dumps({"id": next(self.ids), "method": "Page.handleJavaScriptDialog",
                                         "params": {"accept": False}, "sessionId": self.session}))
        return reply

    def wait_for(self, method: str) -> dict:
        seen = len(self.events)
        while True:
            for event in self.events[seen:]:
                if event["method"] == method:
                    return event
            seen = len(self.events)
            self._receive()

    def open(self, url: str, width: int = 1200) -> None:
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session=True)
        self.events.clear()
        self.send("Page.navigate", {"url": url}, session=True)
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True}, session=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression!r} raised: {result['exceptionDetails']}")
        return result["result"].get("value")

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions, error log entries and dialogs since the page opened."""
        found = []
        for event in self.events:
            params = event.get("params", {})
            if event["method"] == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append("console: " + " ".join(str(a.get("value", a.get("description")))
                                                    for a in params.get("args", [])))
            elif event["method"] == "Runtime.exceptionThrown":
                found.append("exception: " + params["exceptionDetails"].get("text", ""))
            elif event["method"] == "Log.entryAdded" and params["entry"].get("level") == "error":
                found.append("log: " + params["entry"].get("text", ""))
            elif event["method"] == "Page.javascriptDialogOpening":
                found.append(f"dialog: {params.get('type')} {params.get('message', '')}")
        return found

    def screenshot(self, path: Path, max_height: int = 12000) -> Path:
        """A PNG of the whole page (up to ``max_height`` CSS pixels tall)."""
        size = self.send("Page.getLayoutMetrics", session=True)["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], max_height), "scale": 1}
        shot = self.send("Page.captureScreenshot", {"format": "png", "clip": clip, "captureBeyondViewport": True},
                         session=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path
