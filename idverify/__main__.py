"""``python -m idverify``: the same as the ``idverify`` command."""

import sys

from idverify.cli import main

sys.exit(main())
