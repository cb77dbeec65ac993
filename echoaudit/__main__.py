"""``python -m echoaudit``: the same command as ``echoaudit``."""

import sys

from echoaudit.cli import main

sys.exit(main())
