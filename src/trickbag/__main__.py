"""``python -m trickbag`` (used by ``torchrun -m trickbag train ...``)."""

import sys

from trickbag.cli import main

sys.exit(main())
