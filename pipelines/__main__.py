"""``python -m pipelines``: the command-line entry to the generation core."""

import argparse
import json
import sys
from pathlib import Path

from .engines import find_weights
from .errors import PipelineError


def _cmd_weights(args) -> dict:
    weights = find_weights(Path(args.models_dir))
    return {
        "models_dir": str(weights.models_dir),
        "weights": weights.by_folder,
        "can_run_sd": weights.can_run_sd,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipelines", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    weights = commands.add_parser("weights", help="list the model files installed in MODELS_DIR")
    weights.add_argument("--models-dir", default="models")
    weights.set_defaults(handler=_cmd_weights)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = args.handler(args)
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
