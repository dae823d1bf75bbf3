"""`python -m synseg.data.convert`: see synseg.data.convert.cli."""

import sys

from synseg.data.convert.cli import main

sys.exit(main())
