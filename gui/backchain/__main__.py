"""``python -m backchain``."""

import sys

from backchain.launch import main

sys.exit(main())
