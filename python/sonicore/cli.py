"""Command line: `sonicore info | stft-roundtrip | ...`."""
from __future__ import annotations

import argparse
import json
import sys


def _cmd_info(args) -> int:
    from .info import collect, format_info
    info = collect()
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sonicore", description="sonicore: kernels and pipelines for generative audio")
    p.add_argument("--threads", type=int, default=None, help="size of sonicore's CPU thread pool")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("info", help="version, compiled and usable backends, threads")
    s.add_argument("--json", action="store_true", help="print as JSON")
    s.set_defaults(func=_cmd_info)
    # Other subcommands register themselves here as they land.
    for name in ("sonicore.cli_stft", "sonicore.cli_align"):
        try:
            mod = __import__(name, fromlist=["register"])
        except ImportError:
            continue
        mod.register(sub)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads is not None:
        import sonicore
        sonicore.set_num_threads(args.threads)
    try:
        return args.func(args)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"sonicore {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
