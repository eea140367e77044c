import sys

from stylus_ui.cli import main

sys.exit(main())
