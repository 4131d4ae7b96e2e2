"""A warm layerlab process for the bench, as the Jupyter kernel is one.

Reads one JSON list of CLI arguments per line on stdin, runs
`layerlab.engine.cli.main.main(arguments)` in this process, and writes
{"status": exit status, "seconds": wall time} as one JSON line to the
original stdout. File descriptors 1 and 2 point at /dev/null meanwhile, so
neither the presenter nor a container's inherited output can reach the
reply channel. Ends at end of input.
"""

import json
import os
import sys
import time

from layerlab.engine.cli.main import main


def serve():
    sys.stdout.flush()
    replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)

    for line in sys.stdin:
        arguments = json.loads(line)
        started = time.perf_counter()
        status = main(arguments)
        seconds = time.perf_counter() - started
        sys.stdout.flush()
        replies.write(json.dumps({"status": status, "seconds": seconds}) + "\n")
        replies.flush()


if __name__ == "__main__":
    serve()
