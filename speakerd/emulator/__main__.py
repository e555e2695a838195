"""`python -m speakerd.emulator`: the same as `speakerd emulate`."""

import sys

from .server import main

sys.exit(main())
