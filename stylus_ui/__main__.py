import sys

from stylus_ui.cli import main
from stylus_ui.cli.common import redact_output

redact_output()  # no token reaches the terminal, whatever a server echoes back
sys.exit(main())
