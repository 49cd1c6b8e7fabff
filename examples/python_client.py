"""Drive riffengine over OSC from Python: set a prompt, alpha and seed, then print the status.

    python examples/python_client.py --prompt "lo-fi piano with rain" --alpha 0.3 --seed 7
    python examples/python_client.py --listen 5     # print pushed events for 5 seconds

Uses python-osc to build and parse messages and one plain UDP socket, so the engine's
answers (``/riff/status.reply``, ``/riff/fail``, pushed events) come back to the port this
script sends from.
"""

from __future__ import annotations

import argparse
import socket
import time

from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder


def message(address: str, *args: object) -> bytes:
    builder = OscMessageBuilder(address)
    for arg in args:
        builder.add_arg(arg)
    return builder.build().dgram


def receive(sock: socket.socket, timeout: float) -> OscMessage | None:
    sock.settimeout(timeout)
    try:
        return OscMessage(sock.recv(65535))
    except TimeoutError:
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--prompt", help="prompt of side A, slot 0")
    parser.add_argument("--prompt-b", help="prompt of side B, slot 0")
    parser.add_argument("--alpha", type=float, help="A (0) to B (1)")
    parser.add_argument("--seed", type=int, help="seed of side A")
    parser.add_argument("--evolve", type=float, help="evolve step per loop (0 = off, 0.25 as Riffusion)")
    parser.add_argument("--glide", type=int, help="loops a prompt/weight/seed change glides over")
    parser.add_argument("--transport", choices=["play", "stop"], help="play or stop on the bar grid")
    parser.add_argument(
        "--listen", type=float, default=0.0, metavar="SECONDS", help="subscribe and print pushed events for this long"
    )
    args = parser.parse_args()

    engine = (args.host, args.port)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0" if args.host not in ("127.0.0.1", "localhost") else "127.0.0.1", 0))

    changes = [
        ("/riff/prompt_a/0", args.prompt),
        ("/riff/prompt_b/0", args.prompt_b),
        ("/riff/alpha", args.alpha),
        ("/riff/seed_a", args.seed),
        ("/riff/evolve", args.evolve),
        ("/riff/glide", args.glide),
        ("/riff/transport", args.transport),
    ]
    for address, value in changes:
        if value is not None:
            sock.sendto(message(address, value), engine)

    sock.sendto(message("/riff/status"), engine)
    failed = False
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        reply = receive(sock, deadline - time.monotonic())
        if reply is None:
            print(f"no answer from {args.host}:{args.port}; is riffengine running with OSC on?")
            return 1
        if reply.address == "/riff/fail":
            print("refused:", *reply.params)
            failed = True
        elif reply.address == "/riff/status.reply":
            values = reply.params
            for name, value in zip(values[::2], values[1::2]):
                print(f"{name} = {value:g}" if isinstance(value, float) else f"{name} = {value}")
            break

    if args.listen > 0:
        sock.sendto(message("/riff/notify", 1), engine)
        end = time.monotonic() + args.listen
        while time.monotonic() < end:
            event = receive(sock, end - time.monotonic())
            if event is not None:
                print(event.address, *event.params)
        sock.sendto(message("/riff/notify", 0), engine)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
