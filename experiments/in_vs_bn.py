"""Reproduce RQ1–RQ3 (instance vs batch normalization); same as `instyle experiment in-vs-bn`.

    python experiments/in_vs_bn.py --preset cpu      # ~1.5 h on a 2-core CPU, report in docs/experiments/
    python experiments/in_vs_bn.py --preset full     # sized for a GPU

The logic lives in ``instyle.experiments.in_vs_bn`` so the CLI and this script cannot drift apart.
"""

from __future__ import annotations

import sys

from instyle.apps.cli import main

if __name__ == "__main__":
    sys.exit(main(["experiment", "in-vs-bn", *sys.argv[1:]]))
