import sys

from workerledger.cli import main

sys.exit(main())
