from rtpm.cli import main

raise SystemExit(main())
