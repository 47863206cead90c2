"""``python -m foadx_cli``: the same as the ``foadx`` console script (what torchrun launches)."""

import sys

from foadx_cli.app import main

sys.exit(main())
