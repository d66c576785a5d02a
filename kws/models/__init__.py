"""Keyword-spotting models, and the surgery log that lets a checkpoint rebuild a compressed one."""
from kws.models.tiny_conv import TinyConv

__all__ = ["TinyConv"]
