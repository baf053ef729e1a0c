"""`python -m pyxsw` is the `pyxsw` command."""
import sys

from .cli import main

sys.exit(main())
