"""``python -m consumer``: the same entry point as the ``paper-consumer`` script."""

from consumer.cli import main

raise SystemExit(main())
