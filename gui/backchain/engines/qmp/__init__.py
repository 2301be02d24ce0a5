"""qmp engine package."""
