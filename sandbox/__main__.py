"""Entry point of `python -m sandbox`."""

import sys

from .cli import main

sys.exit(main())
