"""Backchain's icons, desktop entry and AppStream metainfo, read with importlib.resources."""
