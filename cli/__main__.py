"""``python -m cli`` runs the ``cxr`` command line (used by subprocess-based tests and the demo)."""

import sys

from cli.main import main

sys.exit(main())
