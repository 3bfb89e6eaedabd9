from mistnet.cli import main

raise SystemExit(main())
