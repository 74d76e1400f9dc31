"""`python -m shoal.plugins.cni`: the same as the shoal-cni executable."""

from .main import main

raise SystemExit(main())
