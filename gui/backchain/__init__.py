"""Backchain: see a qcow2 backing chain, preview a block commit exactly, then run it."""

__version__ = "0.1.0"
