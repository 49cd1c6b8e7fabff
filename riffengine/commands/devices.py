"""``riffengine devices``: list audio outputs (PortAudio) and MIDI ports (mido)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "devices",
        help="list audio devices and MIDI ports",
        description="List the audio devices (for --output / audio.output; * marks the default) "
        "and the MIDI input and output ports (for midi.input and the clock ports).",
    )
    parser.add_argument(
        "--backend", default=None, metavar="API", help="MIDI backend: rtmidi (default), UNIX_JACK or LINUX_ALSA"
    )
    parser.set_defaults(func=run)


def midi_ports(backend: str | None = None) -> tuple[list[str], list[str]]:
    """(input names, output names) of the MIDI backend; raises on a broken backend."""
    import mido

    name = "mido.backends.rtmidi" + (f"/{backend}" if backend and backend != "rtmidi" else "")
    api = mido.Backend(name, load=True)
    return list(api.get_input_names()), list(api.get_output_names())


def midi_lines(backend: str | None = None) -> list[str]:
    try:
        inputs, outputs = midi_ports(backend)
    except Exception as exc:  # no MIDI system here: say so, the audio list is still useful
        return [f"  (MIDI unavailable: {exc})"]
    lines = ["  inputs:"] + [f"    {n}" for n in inputs] + (["    (none)"] if not inputs else [])
    lines += ["  outputs:"] + [f"    {n}" for n in outputs] + (["    (none)"] if not outputs else [])
    lines.append("  use a port name (a unique part is enough) or virtual:NAME for midi.input")
    return lines


def run(args: argparse.Namespace) -> int:
    from riffengine.audio.output import list_devices

    print("Audio devices:")
    for line in list_devices().splitlines():
        print(f"  {line}")
    print(f"MIDI ports ({args.backend or 'rtmidi'}):")
    for line in midi_lines(args.backend):
        print(line)
    return 0
