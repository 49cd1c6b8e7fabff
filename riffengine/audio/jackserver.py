"""Start and stop a private JACK server (the dummy backend needs no sound card).

Used by the tests and handy on a headless box::

    with JackServer(sample_rate=44100, period=256) as server:
        os.environ.update(server.env)   # JACK_DEFAULT_SERVER=<name> for clients in this process
        ...

The server gets a unique name (``jackd -n NAME``), so it never collides with a JACK server the
user already runs; clients reach it through ``JACK_DEFAULT_SERVER`` (libjack, and so PortAudio's
JACK host API, honour it) or ``jack.Client(..., servername=NAME)``. It is stopped by its own
process id, never by name.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from typing import IO

from riffengine.errors import UserError


class JackServer:
    """A ``jackd`` process with the dummy (or another) backend, started and stopped by PID."""

    def __init__(
        self,
        name: str | None = None,
        sample_rate: int = 44100,
        period: int = 256,
        driver: str = "dummy",
        realtime: bool = True,
    ) -> None:
        self.name = name or f"riffengine-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.sample_rate = sample_rate
        self.period = period
        self.driver = driver
        self.realtime = realtime
        self.process: subprocess.Popen | None = None
        self._log: IO[str] | None = None

    @property
    def env(self) -> dict[str, str]:
        """Environment entries that point JACK clients (PortAudio included) at this server."""
        return {"JACK_DEFAULT_SERVER": self.name}

    def command(self) -> list[str]:
        cmd = ["jackd", "-n", self.name]
        if not self.realtime:
            cmd.append("--no-realtime")
        return cmd + ["-d", self.driver, "-r", str(self.sample_rate), "-p", str(self.period)]

    def start(self, timeout: float = 15.0) -> JackServer:
        """Start jackd and wait until clients can connect; UserError if it cannot start.

        If real-time scheduling is asked for and the server will not start with it (no
        permission, as in some containers), it is started once more without.
        """
        if shutil.which("jackd") is None or shutil.which("jack_wait") is None:
            raise UserError("jackd is not installed: install the Debian package jackd2 (scripts/setup.sh does)")
        try:
            return self._start(timeout)
        except UserError:
            if not self.realtime:
                raise
            self.realtime = False
            return self._start(timeout)

    def _start(self, timeout: float) -> JackServer:
        self._log = tempfile.TemporaryFile(mode="w+")
        env = dict(os.environ, JACK_NO_AUDIO_RESERVATION="1")
        self.process = subprocess.Popen(self.command(), stdout=self._log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if self._reachable():
                return self
            time.sleep(0.05)
        output = self.output()
        self.stop()
        command = " ".join(self.command())
        raise UserError(f"the JACK server {self.name!r} did not start ({command}): {output.strip()[-500:]}")

    def _reachable(self) -> bool:
        result = subprocess.run(
            ["jack_wait", "-c", "-s", self.name], capture_output=True, text=True, env=os.environ.copy()
        )
        return result.returncode == 0 and "not running" not in result.stdout

    def output(self) -> str:
        """What jackd printed so far."""
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the server by its PID (SIGTERM, then SIGKILL if it hangs)."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> JackServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
