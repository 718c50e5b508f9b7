"""``python -m sdnn.predict``."""

import sys

from sdnn.predict.cli import main

sys.exit(main())
