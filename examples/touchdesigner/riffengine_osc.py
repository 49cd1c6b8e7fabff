"""riffengine from TouchDesigner: paste into a Text DAT named `riffengine` (see README.md).

Needs, in the same network:
  oscout1  an OSC Out DAT: Network Address 127.0.0.1 (the engine), Network Port 9000
  oscin1   an OSC In DAT: Network Port 9001, Callbacks DAT = riffengine_callbacks
           (a Text DAT holding the onReceiveOSC function at the end of this file)

Call from anywhere:  mod.riffengine.set_prompt('lo-fi piano with rain')
                     mod.riffengine.set_alpha(0.5); mod.riffengine.set_seed(1234)
                     mod.riffengine.set_evolve(0.25); mod.riffengine.set_glide(4)
                     mod.riffengine.play(); mod.riffengine.stop()
                     mod.riffengine.subscribe(); mod.riffengine.status()
"""

REPLY_PORT = 9001  # the OSC In DAT's port: the engine answers and pushes events there


def _out():
    return op("oscout1")


def send(address, *values):
    # One message, no bundle: riffengine also honours bundle timetags if you send bundles.
    _out().sendOSC(address, list(values))


def set_prompt(text, side="a", slot=0):
    send(f"/riff/prompt_{side}/{slot}", str(text))


def set_alpha(value):
    send("/riff/alpha", float(value))


def set_seed(seed, side="a"):
    send(f"/riff/seed_{side}", int(seed))


def set_norm(param, position):
    """A 0..1 slider onto a parameter's whole range, e.g. set_norm('guidance_a', 0.3)."""
    send(f"/riff/{param}/norm", float(position))


def set_evolve(step):
    """The loop evolves on its own by this much per loop (0 = off; 0.25 as Riffusion's app)."""
    send("/riff/evolve", float(step))


def set_evolve_mode(mode):
    """'seed' (next seed at each rollover), 'pingpong' (A to B and back) or 'toward_b'."""
    send("/riff/evolve_mode", str(mode))


def set_glide(loops):
    """Prompt, weight and seed changes arrive over this many loops (0 = at the next seam)."""
    send("/riff/glide", int(loops))


def play():
    """Start on the next bar line."""
    send("/riff/transport", "play")


def stop():
    """Fade out to the next bar line and stop rendering."""
    send("/riff/transport", "stop")


def scene(number):
    send("/riff/scene", int(number))


def subscribe(on=True):
    """Beats, new loops (with their spectrogram PNG path), changes and failures to oscin1."""
    send("/riff/notify", 1 if on else 0, REPLY_PORT)


def status():
    """Ask for every parameter and engine figure; the answer arrives at oscin1."""
    send("/riff/status", REPLY_PORT)


# ---- riffengine_callbacks (the OSC In DAT's Callbacks DAT) ------------------------------
# Keeps the latest status in a Table DAT named `riffstatus` (name | value rows) and the
# latest loop's spectrogram path in a Movie File In TOP named `spectrogram`, and what each
# loop is (alpha, seeds, prompt hash, step, glide) in a Table DAT named `riffwalk`.


def onReceiveOSC(dat, rowIndex, message, byteData, timeStamp, address, args, peer):
    if address == "/riff/status.reply":
        table = op("riffstatus")
        table.clear()
        for name, value in zip(args[0::2], args[1::2]):
            table.appendRow([name, value])
    elif address == "/riff/loop":
        index, bar, path = args[:3]  # a fourth argument is the image's URL when the web runs
        op("spectrogram").par.file = path
    elif address == "/riff/walk":
        index, alpha, seed_a, seed_b, prompts, step, glide = args
        op("riffwalk").appendRow([index, alpha, seed_a, seed_b, prompts, step, glide])
    elif address == "/riff/fail":
        debug(f"riffengine refused {args[0]}: {args[1]}")
    return
