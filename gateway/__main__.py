"""`python -m gateway` runs the `ombre` command."""

from gateway.cli import main

raise SystemExit(main())
