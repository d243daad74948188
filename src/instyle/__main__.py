"""``python -m instyle``: the same as the ``instyle`` command (handy where the script is not on PATH)."""

from instyle.apps.cli import main

raise SystemExit(main())
