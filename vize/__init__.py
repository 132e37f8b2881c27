"""Vize: self-hosted trainable image recognition."""

__version__ = "0.1.0"
