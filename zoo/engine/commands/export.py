"""`export FORMAT`: the model in another runtime's format (the formats are the modules of `zoo.export`)."""
from __future__ import annotations

HELP = "write the model for another runtime (export --help lists the formats)"


def add_arguments(parser, model) -> None:
    from zoo.export import format_modules
    formats = parser.add_subparsers(dest="format", required=True, metavar="FORMAT")
    for name, module in format_modules().items():
        module.add_arguments(formats.add_parser(name, help=module.HELP, description=module.HELP), model)


def run(model, args) -> int:
    from zoo.export import format_modules
    return format_modules()[args.format].run(model, args)
