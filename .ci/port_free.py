"""Exit 1 with a message naming the port when something already listens on 127.0.0.1:PORT (used by `make ui`).

`mlflow ui` itself logs the bind error and still exits 0, and a browser pointed at the port would show whatever
store the other server has; so the port is checked first."""

from __future__ import annotations

import socket
import sys


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[1].isdigit() or not 0 < int(argv[1]) < 65536:
        print(
            f"error: PORT must be a TCP port number, got {' '.join(argv[1:]) or 'nothing'}", file=sys.stderr
        )
        return 2
    port = int(argv[1])
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a TIME_WAIT leftover is not "taken"
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as err:
            print(
                f"error: port {port} on 127.0.0.1 is taken ({err.strerror}); another server (maybe another "
                f"MLflow UI with another store) listens there. Stop it, or run `make ui PORT=<free port>`.",
                file=sys.stderr,
            )
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
