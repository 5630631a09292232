from zoo.triton.server import main

raise SystemExit(main())
