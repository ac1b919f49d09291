"""``python -m demixstudio`` is the ``demixstudio`` command."""

import sys

from demixstudio.cli import main

sys.exit(main())
