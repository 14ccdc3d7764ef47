import sys

from hft_core.cli import main

sys.exit(main())
