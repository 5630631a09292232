"""Helpers for the tests that run every registered family: arguments at a small input size."""
from zoo.engine.cli import make_parser

SMALL_INPUT = 64
# families whose smallest official network is too wide for these sweeps: a narrow table of the same blocks
NARROW = {"rtdetr": ["--model-yaml", "tests/data/rtdetr-tiny.yaml"]}


def small_input_args(model):
    """`validate`'s arguments with --input-size SMALL_INPUT where the family has that flag."""
    parser = make_parser(model)
    try:
        return parser.parse_args(["validate", "--input-size", str(SMALL_INPUT), *NARROW.get(model.name, [])])
    except (SystemExit, Exception):  # no such flag, or the family refuses that size
        return parser.parse_args(["validate"])
