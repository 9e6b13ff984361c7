"""``python -m infralens`` is the ``infralens`` command."""

from infralens.cli import main

raise SystemExit(main())
