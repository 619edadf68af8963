import sys

from pyfrp.cli import frps_main

sys.exit(frps_main())
