"""Riffusion's spectrogram parameters and the EXIF tags that carry them in an image."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

# EXIF tag numbers. 11000-11080 are Riffusion's; 11100-11120 are riffengine's loop metadata.
TAG_SAMPLE_RATE = 11000
TAG_STEREO = 11005
TAG_STEP_SIZE_MS = 11010
TAG_WINDOW_DURATION_MS = 11020
TAG_PADDED_DURATION_MS = 11030
TAG_NUM_FREQUENCIES = 11040
TAG_MIN_FREQUENCY = 11050
TAG_MAX_FREQUENCY = 11060
TAG_POWER_FOR_IMAGE = 11070
TAG_MAX_VALUE = 11080
TAG_BPM = 11100
TAG_BARS = 11110
TAG_BEATS_PER_BAR = 11120

#: Riffusion's decoder ignores the image's own max value and scales to this.
DEFAULT_MAX_VALUE = 30e6


@dataclass(frozen=True)
class SpectrogramParams:
    """How audio maps to a spectrogram image. The defaults are Riffusion's.

    The model always works on 512 columns (5.12 s at a 10 ms step) of 512 mel bins.
    """

    sample_rate: int = 44100
    stereo: bool = False
    step_size_ms: int = 10
    window_duration_ms: int = 100
    padded_duration_ms: int = 400
    num_frequencies: int = 512
    min_frequency: int = 0
    max_frequency: int = 10000
    power_for_image: float = 0.25

    @property
    def hop_length(self) -> int:
        return int(self.sample_rate / 1000.0 * self.step_size_ms)

    @property
    def win_length(self) -> int:
        return int(self.sample_rate / 1000.0 * self.window_duration_ms)

    @property
    def n_fft(self) -> int:
        return int(self.sample_rate / 1000.0 * self.padded_duration_ms)

    @property
    def channels(self) -> int:
        return 2 if self.stereo else 1

    def columns_for(self, num_samples: int) -> int:
        """Image width for a clip of ``num_samples`` (torch's centred STFT: 1 + floor(n / hop))."""
        return 1 + num_samples // self.hop_length

    def samples_for(self, columns: int) -> int:
        """Samples a ``columns``-wide image decodes to when no length is asked for."""
        return self.hop_length * (columns - 1)

    def to_exif(self, max_value: float) -> dict[int, int | float]:
        """The EXIF tags Riffusion writes, with ints and floats exactly where it has them."""
        return {
            TAG_SAMPLE_RATE: int(self.sample_rate),
            TAG_STEREO: int(self.stereo),
            TAG_STEP_SIZE_MS: int(self.step_size_ms),
            TAG_WINDOW_DURATION_MS: int(self.window_duration_ms),
            TAG_PADDED_DURATION_MS: int(self.padded_duration_ms),
            TAG_NUM_FREQUENCIES: int(self.num_frequencies),
            TAG_MIN_FREQUENCY: int(self.min_frequency),
            TAG_MAX_FREQUENCY: int(self.max_frequency),
            TAG_POWER_FOR_IMAGE: float(self.power_for_image),
            TAG_MAX_VALUE: float(max_value),
        }

    @classmethod
    def from_exif(cls, exif: Mapping[int, Any]) -> SpectrogramParams:
        """Parameters from an image's EXIF; missing tags keep Riffusion's defaults."""
        fields: dict[str, tuple[int, Callable[[Any], Any]]] = {
            "sample_rate": (TAG_SAMPLE_RATE, int),
            "stereo": (TAG_STEREO, lambda v: bool(int(v))),
            "step_size_ms": (TAG_STEP_SIZE_MS, int),
            "window_duration_ms": (TAG_WINDOW_DURATION_MS, int),
            "padded_duration_ms": (TAG_PADDED_DURATION_MS, int),
            "num_frequencies": (TAG_NUM_FREQUENCIES, int),
            "min_frequency": (TAG_MIN_FREQUENCY, int),
            "max_frequency": (TAG_MAX_FREQUENCY, int),
            "power_for_image": (TAG_POWER_FOR_IMAGE, float),
        }
        found = {name: conv(exif[tag]) for name, (tag, conv) in fields.items() if tag in exif}
        return replace(cls(), **found)


@dataclass(frozen=True)
class LoopInfo:
    """The tempo of a seed image: it holds exactly ``bars`` bars at ``bpm``."""

    bpm: float
    bars: int
    beats_per_bar: int = 4

    def to_exif(self) -> dict[int, int | float]:
        return {TAG_BPM: float(self.bpm), TAG_BARS: int(self.bars), TAG_BEATS_PER_BAR: int(self.beats_per_bar)}

    @classmethod
    def from_exif(cls, exif: Mapping[int, Any]) -> LoopInfo | None:
        if TAG_BPM not in exif or TAG_BARS not in exif:
            return None
        return cls(float(exif[TAG_BPM]), int(exif[TAG_BARS]), int(exif.get(TAG_BEATS_PER_BAR, 4)))
