"""`python -m ombre` runs the `ombre` command."""

from ombre.cli import main

raise SystemExit(main())
