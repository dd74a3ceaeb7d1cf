"""Runs scriptctl as `python -m daemon.cli`."""

import sys

from daemon.cli.main import main

sys.exit(main())
