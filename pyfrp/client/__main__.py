import sys

from pyfrp.cli import frpc_main

sys.exit(frpc_main())
