"""The command line every model shares: `python -m zoo.<model> COMMAND ...`.

A model's `__main__` is one line, `raise SystemExit(main(MyModel()))`. Each command is a module of
`zoo.engine.commands`; this file only builds the parser from them and dispatches. Exit codes: 0 done, 1 validation
over tolerance, 2 a user error (one line on stderr; the traceback only with --verbose).
"""
from __future__ import annotations

from .allocator import keep_freed_memory
from .commands import command_modules
from .model import ZooModel
from .errors import cut, say
from .flags import bounded, OneLineParser

# Ranges of the flags that many families declare themselves. A family that declares one as a plain `int` gets this
# range, so `--num-classes 0` or `--input-size -3` is one line naming the flag and the range in every family.
COMMON_RANGES = {"num_classes": bounded(int, 1, 100_000), "input_size": bounded(int, 1, 16384),
                 "heads": bounded(int, 1, 4096)}


def make_parser(model: ZooModel) -> OneLineParser:
    parser = OneLineParser(prog=f"python -m zoo.{model.name}", description=model.summary)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, module in command_modules().items():
        command = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(command, model)
        _range_check_plain_ints(command)
    return parser


def _range_check_plain_ints(parser) -> None:
    for action in parser._actions:
        if action.type is int and action.dest in COMMON_RANGES:
            action.type = COMMON_RANGES[action.dest]


def main(model: ZooModel, argv: list[str] | None = None) -> int:
    args = make_parser(model).parse_args(argv)
    keep_freed_memory()
    try:
        return command_modules()[args.command].run(model, args)
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    except Exception as e:  # one clear line; the traceback only on request
        if getattr(args, "verbose", False):
            raise
        say(f"zoo.{model.name} {args.command}: error: {cut(' '.join(str(e).split()), 500) or type(e).__name__}")
        return 2
