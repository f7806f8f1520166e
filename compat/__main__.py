"""`python -m compat`: see compat/run.py."""

import sys

from .run import main

sys.exit(main())
