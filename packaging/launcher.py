"""PyInstaller's entry script: run Backchain's command line, as the `backchain` script does."""

import sys

from backchain.launch import main

if __name__ == "__main__":
    sys.exit(main())
