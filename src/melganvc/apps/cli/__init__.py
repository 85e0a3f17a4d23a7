"""``melganvc`` command line: thin wrappers over the package; user mistakes print one line.

The subcommands are listed in ``COMMANDS`` below, grouped in four modules (training,
conversion, applications, detection); ``main`` turns ``UserError`` into ``melganvc: error: <message>``
with exit status 2 and never shows a traceback for it.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from collections.abc import Iterator

from melganvc.apps.cli import app_commands, convert_commands, detect_commands, train_commands
from melganvc.errors import UserError
from melganvc.version import __version__

COMMANDS = (*train_commands.COMMANDS, *convert_commands.COMMANDS, *app_commands.COMMANDS,
            *detect_commands.COMMANDS)


# --- entry point -----------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="melganvc", description="Voice conversion and audio style transfer with GANs on mel-spectrograms (MelGAN-VC).")
    parser.add_argument("--version", action="version", version=f"melganvc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_text, setup, handler in COMMANDS:
        p = sub.add_parser(name, help=help_text, description=help_text)
        setup(p)
        p.add_argument("--threads", type=int, metavar="N",
                       help="CPU threads for torch (default: the CPUs this process may use, "
                            "affinity and container quota counted; OMP_NUM_THREADS if set)")
        p.set_defaults(handler=handler)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a scheduler, ``docker stop``), raised in the main thread like Ctrl-C,
    so every ``atomic_path`` removes its temp file and the command exits cleanly."""


def _raise_terminated(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    raise Terminated


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Handle SIGTERM like SIGINT while a command runs; the previous handler comes back after
    (``main`` may be called in-process). Outside the main thread signals cannot be handled."""
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    with _sigterm_as_interrupt():
        try:
            from melganvc.device import set_cpu_threads

            set_cpu_threads(args.threads)
            return int(args.handler(args) or 0)
        except UserError as exc:
            print(f"melganvc: error: {exc}", file=sys.stderr)
            return 2
        except Terminated:
            print("melganvc: terminated", file=sys.stderr)
            return 128 + signal.SIGTERM
        except KeyboardInterrupt:
            print("melganvc: interrupted", file=sys.stderr)
            return 130


if __name__ == "__main__":
    sys.exit(main())
