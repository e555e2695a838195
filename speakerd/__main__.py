"""The command line: run, check-config, devices, selftest, emulate."""

import sys


def main(argv: list[str] | None = None) -> int:
    raise SystemExit("not yet")


if __name__ == "__main__":
    sys.exit(main())
