"""A headless Chromium driven over the DevTools protocol on a pipe.

`--remote-debugging-pipe` makes Chromium read protocol messages from fd 3
and write its replies and events to fd 4, each a JSON text ended by a NUL
byte. No port is opened, and the only dependency is the browser itself.
"""

from __future__ import annotations

import base64
import fcntl
import json
import logging
import os
import select
import subprocess
import time

log = logging.getLogger(__name__)

# The flags keep the browser off the network except for the pages it is
# sent to: no component updates, sync, background requests or QUIC, and
# every host name except 127.0.0.1 fails to resolve.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--metrics-recording-only",
    "--no-default-browser-check",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--window-size=1280,900",
]


class DevToolsError(RuntimeError):
    """A protocol command failed, or the browser did not reply in time."""


class Chromium:
    """One headless Chromium process with one page, attached over a pipe."""

    def __init__(self, executable: str, user_data_dir: str, timeout: float = 30.0):
        self.timeout = timeout
        self._next_id = 0
        self._buffer = b""

        to_browser_read, to_browser_write = os.pipe()
        from_browser_read, from_browser_write = os.pipe()

        def connect_pipes():
            # Runs in the child between fork and exec. The pipe ends move
            # above fd 10 first, so that neither is overwritten when the
            # other is copied to fd 3 or 4.
            browser_input = fcntl.fcntl(to_browser_read, fcntl.F_DUPFD, 10)
            browser_output = fcntl.fcntl(from_browser_write, fcntl.F_DUPFD, 10)
            os.dup2(browser_input, 3)
            os.dup2(browser_output, 4)

        args = [executable, *CHROMIUM_FLAGS, f"--user-data-dir={user_data_dir}",
                "--remote-debugging-pipe", "about:blank"]
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            # close_fds would close fds 3 and 4 after connect_pipes made
            # them. Python opens its fds non-inheritable (PEP 446), so
            # they stay out of Chromium.
            preexec_fn=connect_pipes, close_fds=False,
        )
        os.close(to_browser_read)
        os.close(from_browser_write)
        self._writer = to_browser_write
        self._reader = from_browser_read
        log.info("started chromium, pid %d", self.process.pid)

        target = self.send("Target.createTarget", url="about:blank")
        attached = self.send("Target.attachToTarget", targetId=target["targetId"], flatten=True)
        self.session = attached["sessionId"]
        self.send("Page.enable", session=self.session)
        self.send("Runtime.enable", session=self.session)

    def send(self, method: str, session: str | None = None, **params) -> dict:
        """Send one command and return its result. Raises DevToolsError on an error reply."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        os.write(self._writer, json.dumps(message).encode() + b"\0")

        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") != self._next_id:
                continue  # an event, or the reply to an earlier command
            if "error" in reply:
                raise DevToolsError(f"{method} failed: {reply['error']}")
            return reply.get("result", {})

    def navigate(self, url: str) -> None:
        self.send("Page.navigate", session=self.session, url=url)

    def evaluate(self, expression: str):
        """Evaluate a JavaScript expression in the page and return its value as JSON data."""
        result = self.send("Runtime.evaluate", session=self.session, expression=expression,
                           returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise DevToolsError(f"script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60.0, interval: float = 0.25):
        """Evaluate `expression` until it is truthy and return that value. Raises DevToolsError on timeout."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(interval)
        raise DevToolsError(f"timed out after {timeout} s waiting for {expression!r} (last value {value!r})")

    def screenshot(self, path) -> None:
        result = self.send("Page.captureScreenshot", session=self.session, format="png")
        with open(path, "wb") as file:
            file.write(base64.b64decode(result["data"]))

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (DevToolsError, OSError) as error:
            log.warning("Browser.close failed (%s); killing chromium pid %d", error, self.process.pid)
            self.process.kill()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            log.warning("chromium pid %d did not exit; killing it", self.process.pid)
            self.process.kill()
            self.process.wait()
        os.close(self._writer)
        os.close(self._reader)

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DevToolsError(f"chromium sent no reply within {self.timeout} s")
            ready, _, _ = select.select([self._reader], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(self._reader, 1 << 16)
            if not chunk:
                raise DevToolsError(f"chromium closed the protocol pipe (exit code {self.process.poll()})")
            self._buffer += chunk

        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)
