"""Audio: ring buffer, timeline, output stream and recorder.

Only :mod:`riffengine.audio.ringbuffer` code runs in the audio callback; everything else runs on
the producer side or in its own thread.
"""
