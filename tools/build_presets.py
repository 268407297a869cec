"""Write every family's preset JSON files from its builder (the source of truth).

Each family package (``diffblocks/presets/<family>/``) names its preset builders in its
``FAMILY`` table; this script runs them and writes ``<family folder>/<preset>.json``. Run it
after changing a builder or a stage block's ports; ``--check`` writes nothing and exits non-zero
when a file differs from what its builder makes (tests/presets/test_presets.py runs that check).

    python tools/build_presets.py [--check]
"""

from __future__ import annotations

import argparse
import sys

from diffblocks.presets import families


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare with the files on disk")
    args = parser.parse_args(argv)
    stale = []
    for family in families().values():
        for path in family.write_presets(check=args.check):
            stale.append(path)
            if not args.check:
                print(f"wrote {path}")
    if args.check:
        for path in stale:
            print(f"{path} is out of date: run python tools/build_presets.py", file=sys.stderr)
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
