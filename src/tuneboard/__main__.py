"""`python -m tuneboard` is the same as the `tuneboard` command."""

import sys

from .cli import main

sys.exit(main())
