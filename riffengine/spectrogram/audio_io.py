"""Reading and writing audio files (wav, flac, ogg) for the codec commands."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio

from riffengine.errors import UserError


def load_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """``(float32 [channels, samples] in [-1, 1], sample_rate)``, or UserError naming the file."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise UserError(f"{path}: is a folder, not an audio file")
    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as exc:
        raise UserError(f"{path}: cannot read audio ({exc}); give a wav, flac or ogg file") from None
    if data.shape[0] == 0:
        raise UserError(f"{path}: the audio file is empty")
    return np.ascontiguousarray(data.T), int(rate)


def to_rate(audio: torch.Tensor, rate: int, target: int) -> torch.Tensor:
    """Resample ``[..., samples]`` from ``rate`` to ``target`` (band-limited sinc)."""
    if rate == target:
        return audio
    return torchaudio.functional.resample(audio, rate, target)


def save_audio(path: str | Path, audio: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> None:
    """Write ``[channels, samples]`` float audio; format from the extension (wav, flac, ogg)."""
    path = Path(path)
    try:
        frames = np.ascontiguousarray(np.asarray(audio, dtype=np.float32).T)
        lossless = path.suffix.lower() in (".wav", ".flac")
        soundfile.write(str(path), frames, sample_rate, subtype=subtype if lossless else None)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise UserError(
            f"{path}: cannot write audio ({exc}); use a .wav, .flac or .ogg name in a writable folder"
        ) from None
