"""``python -m backchain``."""

import sys

from backchain.launch import run

sys.exit(run())
