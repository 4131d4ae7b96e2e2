"""Reading what a program wrote to a pseudo-terminal, for tests that give it one."""

import os


def read_until_closed(master: int) -> bytes:
    """Return everything read from the terminal's master until the last slave fd is closed."""
    output = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            # Linux reports EIO once no process holds the slave open.
            break
        if not chunk:
            break
        output += chunk
    return output
