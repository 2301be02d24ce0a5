"""``python -m backchain``."""

import sys

from backchain.cli import main

sys.exit(main())
