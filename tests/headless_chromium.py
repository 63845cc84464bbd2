"""The system chromium, headless, driven over its DevTools protocol: open a page, read the DOM, click.

A small client of our own (`websocket-client` for the socket), so the tests need no browser
download: `.ci/run` installs Debian's `chromium` where it is missing. `open_page` launches a fresh
chromium with its own profile folder, loads one file, waits for its load event (the page's scripts
have run by then) and records every request the page makes.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NO_CHROMIUM = "no chromium on PATH: `apt-get install -y chromium` (.ci/run installs it, so CI never skips this)"


class Page:
    """One loaded page: `evaluate` a JavaScript expression, `click` an element as a mouse does."""

    def __init__(self, socket):
        self._socket = socket
        self._next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, **params) -> dict:
        self._next_id += 1
        self._socket.send(json.dumps({"id": self._next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self._socket.recv())
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, method: str, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events:
                if event.get("method") == method:
                    return event
            self._socket.settimeout(max(deadline - time.monotonic(), 0.1))
            self.events.append(json.loads(self._socket.recv()))
        raise TimeoutError(f"no {method} within {timeout} s")

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (JSON-serialisable values only)."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def click(self, selector: str) -> None:
        """A left click at the centre of the first element matching `selector`, through the input pipeline."""
        box = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); "
            "e.scrollIntoView({block: 'center', inline: 'center'}); const r = e.getBoundingClientRect(); "
            "return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)

    def requests(self) -> list[str]:
        """The URL of every request the page made so far."""
        return [e["params"]["request"]["url"] for e in self.events if e.get("method") == "Network.requestWillBeSent"]


@contextlib.contextmanager
def open_page(path: Path, profile: Path, timeout: float = 60.0) -> Iterator[Page]:
    """`path` loaded in a fresh headless chromium (profile folder `profile`), after its load event."""
    import websocket

    profile.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [
            CHROMIUM, "--headless=new", "--remote-debugging-port=0", f"--user-data-dir={profile}",
            "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
            "--window-size=1400,1000", "about:blank",
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not (port_file.is_file() and port_file.read_text().count("\n") >= 1):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not start (rc {proc.poll()}): {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.1)
        port = int(port_file.read_text().splitlines()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=timeout) as reply:
            targets = json.load(reply)
        [target] = [t for t in targets if t["type"] == "page"]
        socket = websocket.create_connection(target["webSocketDebuggerUrl"], timeout=timeout, suppress_origin=True)
        try:
            page = Page(socket)
            page.send("Network.enable")
            page.send("Page.enable")
            page.events.clear()
            url = path.resolve().as_uri()
            page.send("Page.navigate", url=url)
            page.wait_for("Page.loadEventFired", timeout)
            while page.evaluate("[location.href, document.readyState].join(' ')") != f"{url} complete":
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{url} did not finish loading")
                time.sleep(0.05)
            yield page
        finally:
            socket.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
