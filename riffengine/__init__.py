"""riffengine: a live-performance audio engine for the Riffusion text-to-music model."""

__version__ = "0.1.0"
