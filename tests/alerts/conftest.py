"""The alert tests start real servers and receivers with the helpers of tests/server and tests/webhooks."""

import os
import sys

here = os.path.dirname(__file__)
sys.path.insert(0, os.path.join(here, "..", "server"))
sys.path.insert(0, os.path.join(here, "..", "webhooks"))
