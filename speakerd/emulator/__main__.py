"""`python -m speakerd.emulator`: the same as `speakerd emulate`."""

import sys

from .cli import main

sys.exit(main())
