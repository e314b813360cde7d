"""`python -m jaxdyn` is the `jaxdyn` command."""

import sys

from jaxdyn.cli import main

sys.exit(main())
