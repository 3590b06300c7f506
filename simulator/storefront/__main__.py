"""``python -m simulator.storefront --channel-fd N``: the child side of ``storefront_process``.

Not a user command (that is ``flashsale serve``): the parent passes one end of a socket pair
and speaks the JSON handshake described in :mod:`simulator.storefront.process`.
"""

from __future__ import annotations

import argparse
import sys

from simulator.storefront.process import child_main


def main(argv: list[str] | None = None) -> int:
    """Parse the channel's file descriptor and run the child."""
    parser = argparse.ArgumentParser(prog="python -m simulator.storefront")
    parser.add_argument("--channel-fd", type=int, required=True, help="the parent's socket")
    return child_main(parser.parse_args(argv).channel_fd)


if __name__ == "__main__":
    sys.exit(main())
