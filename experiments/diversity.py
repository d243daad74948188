"""Quality vs diversity of texture networks, IN vs BN (#17); same as `instyle experiment diversity`.

    python experiments/diversity.py --preset cpu      # ~20 min on a 2-core CPU, report in docs/experiments/
    python experiments/diversity.py --preset full     # the authors' recipe, sized for a GPU

The logic lives in ``instyle.experiments.diversity`` so the CLI and this script cannot drift apart.
"""

from __future__ import annotations

import sys

from instyle.apps.cli import main

if __name__ == "__main__":
    sys.exit(main(["experiment", "diversity", *sys.argv[1:]]))
