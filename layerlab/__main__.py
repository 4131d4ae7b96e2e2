from layerlab.engine.cli.main import console_main

console_main()
