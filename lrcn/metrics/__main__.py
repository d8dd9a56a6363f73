"""``python -m lrcn.metrics RESULTS.json --refs ANNOTATIONS.json``: the same as ``lrcn score``."""

import sys

from lrcn.metrics.cli import cli_score

sys.exit(cli_score())
