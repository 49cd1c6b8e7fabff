"""A JACK MIDI input port that lives in a helper process, so closing it can never crash the engine.

Why: libjack (jack2, up to its current source; upstream issue jackaudio/jack2#216) has a data
race that kills the process with SIGSEGV. ``jack_port_unregister`` removes the port from the
client's port list on the caller's thread while the client's notification thread may be walking
that same list to answer the server's latency notification
(``JackClient::HandleLatencyCallback``), which the server sends to every active client after
*any* graph change by any client (a port registered, a connection made, a client come or gone).
python-rtmidi's JACK API unregisters its port on every ``close_port()`` and in its destructor,
so each close of a JACK MIDI port in a live process is a small chance of a segfault. It does not
matter which libjack copy is loaded (python-rtmidi's wheel bundles its own) or whether JACK
audio shares the process: the race is inside one client of one copy.

So each JACK MIDI input port is opened by a small child process (``python -m
riffengine.control.jackmidi``, which imports only mido and python-rtmidi) that forwards the raw
messages through a pipe. Closing the port is ending that process with ``os._exit`` (no
destructors, so no ``jack_port_unregister``); the server drops the client and its port when
the process's socket closes. Listing ports stays in the engine's process (a client without
ports has nothing to race on).

Protocol, on a pipe of its own (libjack prints on stdout and stderr, which go to the parent's
stderr): one byte 0 when the port is open, or 1 and the reason it could not be opened; then
frames of one length byte and that many MIDI bytes. The child ends when its stdin closes (the
parent closed the port or died). Sysex and system messages (clock included) are dropped in the
child.

Thread rules: :class:`JackMidiInput` calls ``callback`` on its own reader thread (as rtmidi
did); :meth:`JackMidiInput.close` is called from one thread at a time.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import mido

OPEN_TIMEOUT = 15.0
"""Seconds the child may take to start Python, open its JACK client and port."""
OPEN_ATTEMPTS = 3
"""Tries to open a port: a JACK server whose graph runs late (a busy machine) can fail a
client's open handshake now and then, and the next try succeeds."""
RETRY_PAUSE = 0.2
CLOSE_TIMEOUT = 5.0
"""Seconds the child may take to exit after its stdin closes before it is killed (SIGKILL)."""


class JackMidiInput:
    """One JACK MIDI input port owned by a helper process; the interface of a mido input port
    that the engine uses (``name``, ``closed``, ``close()``), with messages sent to ``callback``.

    ``virtual=True`` creates a port named ``name`` for others to connect to; otherwise ``name``
    is an existing JACK MIDI source port (as ``rtmidi.MidiIn.get_ports()`` lists it) that the
    new port connects from. Raises OSError when the port cannot be opened.
    """

    def __init__(
        self,
        name: str,
        callback: Callable[[mido.Message], None],
        virtual: bool = False,
        client_name: str = "riffengine",
    ) -> None:
        self.name = name
        self.callback = callback
        self.closed = False
        self.messages = 0
        self.exit_status: int | None = None
        """The child's exit status once it ended (negative: the signal that killed it)."""
        for attempt in range(1, OPEN_ATTEMPTS + 1):
            try:
                self._start(name, virtual, client_name)
                break
            except OSError:
                if attempt == OPEN_ATTEMPTS:
                    raise
                time.sleep(RETRY_PAUSE)
        self._reader = threading.Thread(target=self._read_forever, name=f"jackmidi-{name}", daemon=True)
        self._reader.start()

    def _start(self, name: str, virtual: bool, client_name: str) -> None:
        """Start the helper and wait until its port is open; OSError (helper gone) if not."""
        read_fd, write_fd = os.pipe()
        cmd = [
            sys.executable,
            "-m",
            "riffengine.control.jackmidi",
            "virtual" if virtual else "port",
            client_name,
            name,
            str(write_fd),
        ]
        try:
            # libjack prints its messages on stdout and stderr: both go to this process's stderr,
            # never into the message pipe (and never into a pipe nobody reads, which would block).
            self._process = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=2, pass_fds=(write_fd,), env=_child_env()
            )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        self._fd = read_fd
        try:
            self._wait_open()
        except BaseException:
            self._stop_child()
            os.close(read_fd)
            raise

    @property
    def pid(self) -> int:
        return self._process.pid

    def _wait_open(self) -> None:
        """Wait for the helper's first byte: 0 is open, 1 starts the reason it could not open."""
        ready, _, _ = select.select([self._fd], [], [], OPEN_TIMEOUT)
        if not ready:
            raise OSError(f"JACK MIDI port {self.name!r}: the helper did not open it in {OPEN_TIMEOUT:.0f} s")
        first = os.read(self._fd, 1)
        if first == _OPEN:
            return
        reason = b""
        while first == _FAILED:
            chunk = os.read(self._fd, 4096)
            if not chunk:
                break
            reason += chunk
        self._stop_child()
        raise OSError(
            reason.decode(errors="replace").strip()
            or f"the JACK MIDI helper exited with status {self._process.returncode}"
        )

    def _read_forever(self) -> None:
        """Reader thread: frames from the helper to ``callback`` until its pipe ends."""
        buffer = b""
        while True:
            try:
                chunk = os.read(self._fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            buffer += chunk
            while buffer and len(buffer) > buffer[0]:
                size = buffer[0]
                data, buffer = buffer[1 : 1 + size], buffer[1 + size :]
                try:
                    message = mido.Message.from_bytes(data)
                except ValueError:
                    continue
                self.messages += 1
                self.callback(message)
        self.exit_status = self._process.wait()
        os.close(self._fd)

    def close(self) -> None:
        """End the helper (its port goes with it) and the reader thread. Idempotent."""
        if self.closed:
            return
        self.closed = True
        self._stop_child()
        if threading.current_thread() is not self._reader:
            self._reader.join(CLOSE_TIMEOUT)
        self.exit_status = self._process.returncode

    def _stop_child(self) -> None:
        process = self._process
        if process.stdin is not None and not process.stdin.closed:
            try:
                process.stdin.close()
            except OSError:
                pass
        try:
            process.wait(CLOSE_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()

    def __enter__(self) -> JackMidiInput:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _child_env() -> dict[str, str]:
    """The environment for the helper: this one, with this package importable."""
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


# --- the helper process ------------------------------------------------------------------------

_OPEN = b"\x00"
_FAILED = b"\x01"
_DROPPED = frozenset(range(0xF0, 0x100))
"""Status bytes the helper does not forward: sysex and system real-time/common messages."""


def _child(kind: str, client_name: str, name: str, fd: int) -> int:
    import rtmidi

    try:
        midi_in = rtmidi.MidiIn(rtapi=rtmidi.API_UNIX_JACK, name=client_name)
        if kind == "virtual":
            midi_in.open_virtual_port(name)
        else:
            ports = midi_in.get_ports()
            if name not in ports:
                raise OSError(f"no JACK MIDI source port {name!r} (there are {ports})")
            midi_in.open_port(ports.index(name), name="in")
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        os.write(fd, _FAILED + f"cannot open JACK MIDI port {name!r}: {exc}".encode())
        os._exit(1)

    def forward(event: tuple[list[int], float], _data: object = None) -> None:
        message = event[0]
        if message and message[0] not in _DROPPED and len(message) < 256:
            try:
                os.write(fd, bytes([len(message)]) + bytes(message))
            except OSError:  # the parent is gone
                os._exit(0)

    midi_in.ignore_types(sysex=True, timing=True, active_sense=True)
    midi_in.set_callback(forward)
    os.write(fd, _OPEN)
    while sys.stdin.buffer.read(4096):
        pass
    # No close_port(), no destructor: never jack_port_unregister in a live client (see above).
    os._exit(0)


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] not in ("virtual", "port") or not sys.argv[4].isdigit():
        print("usage: python -m riffengine.control.jackmidi virtual|port CLIENT_NAME PORT_NAME FD", file=sys.stderr)
        sys.exit(2)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C at the terminal is for the parent
    sys.exit(_child(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
