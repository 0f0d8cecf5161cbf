from ldapsrv.cli import main

raise SystemExit(main())
