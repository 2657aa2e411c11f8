from hostprint.cli import main

raise SystemExit(main())
