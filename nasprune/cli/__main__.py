"""``python -m nasprune.cli``: the same as the ``nasprune`` console script."""

import sys

from nasprune.cli import main

sys.exit(main())
