"""Data modules: Speech Commands (real or the generated offline corpus) with batch-wise features."""

from datamodules.speech_commands import SpeechCommandsDataModule

__all__ = ["SpeechCommandsDataModule"]
