"""`python -m tuneboard` is the same as the `tuneboard` command."""

import sys

from .cli.main import main

sys.exit(main())
