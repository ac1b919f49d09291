"""Audio files, resampling, the STFT convention and the block mixer (no Qt, no session)."""

from demixstudio.audio.io import audio_info, check_audio, load_audio, resample, save_audio
from demixstudio.audio.stft import StftConfig, istft, stft

__all__ = ["StftConfig", "audio_info", "check_audio", "istft", "load_audio", "resample",
           "save_audio", "stft"]
