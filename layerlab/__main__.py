import sys

from layerlab.engine.cli.main import main

sys.exit(main())
