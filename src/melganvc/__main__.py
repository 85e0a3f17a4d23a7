import sys

from melganvc.apps.cli import main

sys.exit(main())
