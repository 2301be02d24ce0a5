"""Helpers shared by every test suite: image checks, the CLI as a child process."""
