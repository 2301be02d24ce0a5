"""files engine package."""
