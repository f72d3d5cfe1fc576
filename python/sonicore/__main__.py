"""`python -m sonicore ...` is the `sonicore` command."""
import sys

from .cli import main

sys.exit(main())
