"""``python -m secagg.bench``."""

from .command import main

raise SystemExit(main())
