"""`python -m synseg.data.toy write | sheet | stats`: see synseg.data.toy.cli."""

import sys

from synseg.data.toy.cli import main

sys.exit(main())
