"""``python -m hubloader …``: the command line (see :mod:`hubloader.faces.cli`)."""

from __future__ import annotations

import sys

from hubloader.faces.cli import main

if __name__ == "__main__":
    sys.exit(main())
