"""``python -m sandbox {demo,serve}``: the local demo and the stand-ins for ``func start``.

* ``demo``: the product's main job end to end on one machine, with checks (``sandbox/demo.py``);
* ``serve``: Azurite and the stand-ins with the demo data, the admin page and routes over HTTP, plus a
  ``local.settings.json`` for a local Functions host, until Ctrl-C (``sandbox/serve.py``).

Run from the repository root (the function folders and ``shared`` are imported from there).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    from sandbox import demo, serve

    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__.split("\n\n")[0].strip("`"))
    commands = parser.add_subparsers(dest="command", required=True, metavar="{demo,serve}")
    demo_parser = commands.add_parser("demo", help="run the integration end to end on 127.0.0.1, with checks")
    demo.add_arguments(demo_parser)
    demo_parser.set_defaults(run=demo.main)
    serve_parser = commands.add_parser("serve", help="run Azurite and the stand-ins for 'func start' until Ctrl-C")
    serve.add_arguments(serve_parser)
    serve_parser.set_defaults(run=serve.main)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # names are not ASCII; never die on a narrow console encoding
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None and (stream.encoding or "").lower().replace("-", "") != "utf8":
            reconfigure(errors="replace")
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
