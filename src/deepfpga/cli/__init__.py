"""The `deepfpga` command line.

Each command lives in its own module `deepfpga.cli.<name>` defining
`add_parser(subparsers) -> argparse.ArgumentParser` and `run(args) -> int`. Modules are imported
only when the parser is built, so importing deepfpga does no work.

Exit status: 0 success, 2 bad input (one line on stderr, no traceback; this includes an
output location that cannot be written and a request larger than the machine's memory),
1 internal failure (or, for `run`, a simulator that is not bit-exact), 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from deepfpga.errors import InputError

# Order is the order of `deepfpga --help`: the pipeline's order.
COMMANDS: tuple[str, ...] = (
    "analyze",
    "svd",
    "quantize",
    "import",
    "export",
    "infer",
    "evaluate",
    "compile",
    "disasm",
    "simulate",
    "dse",
    "run",
    "rtl",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own usage errors are bad input too
        self.exit(2, f"deepfpga: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="deepfpga", description=__doc__.splitlines()[0])
    from deepfpga import __version__

    parser.add_argument("--version", action="version", version=f"deepfpga {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        module = importlib.import_module(f"deepfpga.cli.{name}")
        p = module.add_parser(sub)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_run", None) is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args._run(args) or 0)
    except InputError as e:
        print(f"deepfpga {args.command}: error: {e}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"deepfpga {args.command}: error: no such file: {e.filename}", file=sys.stderr)
        return 2
    except (PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError) as e:
        # A location the early checks could not foresee (it changed during the run).
        print(f"deepfpga {args.command}: error: {e.filename}: {e.strerror}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"deepfpga {args.command}: error: out of memory (use fewer images or a smaller"
              " batch)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"deepfpga {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
