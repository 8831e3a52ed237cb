"""``python -m secagg.bench``."""

from secagg.bench.command import main

raise SystemExit(main())
