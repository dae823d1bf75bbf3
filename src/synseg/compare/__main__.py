"""`python -m synseg.compare --help`."""

import sys

from synseg.compare.runner import main

sys.exit(main())
