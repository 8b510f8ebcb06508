"""The watchdog tests start real servers and training processes with the helpers of tests/server."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "server"))
