"""``python -m simulator`` is the ``flashsale`` command."""

import sys

from simulator.cli import main

sys.exit(main())
