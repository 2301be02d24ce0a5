"""PyInstaller's entry script: run Backchain's command line, as the `backchain` script does."""

import sys

from backchain.launch import run

if __name__ == "__main__":
    sys.exit(run())
