"""Benchmark of ``fedids detect`` (flows/s scored, bundles/s published).

Same as ``python -m fedids.alerts.bench``; see :mod:`fedids.alerts.bench` for the options.
"""

import sys

from fedids.alerts.bench import main

if __name__ == "__main__":
    sys.exit(main())
