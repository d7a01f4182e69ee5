"""`python -m myoqa` runs the CLI."""

import sys

from myoqa.cli import main

sys.exit(main())
