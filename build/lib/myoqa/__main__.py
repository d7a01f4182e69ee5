"""`python -m myoqa` runs the CLI."""

import sys

try:
    from myoqa.cli import main
except KeyboardInterrupt:
    sys.exit(130)

sys.exit(main())
