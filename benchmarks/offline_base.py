"""How a base with pretrained weights on the Hub fails when the Hub is out of reach: connections tried and seconds.

    python -m benchmarks.offline_base                    # RN50 with open_clip's `openai` weights
    python -m benchmarks.offline_base timm:resnet18      # a timm model's pretrained weights

The endpoint is a bound local port that never listens (connections refused), the cache an empty folder, so
nothing leaves the machine. Counted: calls to ``socket.create_connection`` for that port (huggingface_hub's HTTP
client and hello-labels' own probe both connect through it); timed: the ``build_base`` call, from the start of
the build to its error (open_clip and timm imported before). Not a test: nothing is asserted.
"""
from __future__ import annotations

import argparse
import os
import socket
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", nargs="?", default="RN50")
    parser.add_argument("--pretrained", default=None, help="open_clip tag (default for RN50: openai)")
    args = parser.parse_args()
    pretrained = args.pretrained or ("openai" if args.base == "RN50" else None)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    os.environ.update(HF_ENDPOINT=f"http://127.0.0.1:{port}", HF_HOME=tempfile.mkdtemp(),
                      HF_HUB_DISABLE_TELEMETRY="1")
    tried, connect = [], socket.create_connection

    def counting(address, *rest, **kwargs):
        if address[1] == port:
            tried.append(address)
        return connect(address, *rest, **kwargs)

    socket.create_connection = counting
    import open_clip  # noqa: F401  (imported before the clock starts, as timm is)
    import timm  # noqa: F401

    from hello_labels.model.bases import build_base, parse_base  # after HF_ENDPOINT: the client reads it on import

    start = time.perf_counter()
    try:
        build_base(parse_base(args.base, pretrained))
        outcome = "built (weights found)"
    except Exception as err:  # what is measured is how it fails
        outcome = f"{type(err).__name__}: {str(err)[:120]}"
    print(f"{args.base}{f' pretrained={pretrained!r}' if pretrained else ''}: {len(tried)} connections tried, "
          f"{time.perf_counter() - start:.1f} s; {outcome}")


if __name__ == "__main__":
    main()
