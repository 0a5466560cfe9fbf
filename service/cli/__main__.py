"""`python -m service.cli` runs the `contactgraph` command."""

import sys

from service.cli.main import main

sys.exit(main())
