"""``python -m jacnet.cli``."""

import sys

from jacnet.cli import main

sys.exit(main())
