import sys

from melganvc.cli import main

sys.exit(main())
