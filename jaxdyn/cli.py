"""The `jaxdyn` command: `jaxdyn run EXPERIMENT [options]`, `jaxdyn list`, `jaxdyn info`.

The options of `jaxdyn run NAME` are built from the experiment's settings dataclass
(`jaxdyn.experiments._runner`); this module only dispatches and reports errors.
"""

from __future__ import annotations

import argparse
import sys

from jaxdyn.experiments._runner import ProgressBar  # noqa: F401  (kept importable from here)

# Problems a user can fix by changing the command: printed as one line, exit status 2.
# OSError covers --out pointing at a file or at a read-only folder.
_USER_ERRORS = (ValueError, TypeError, FileNotFoundError, OSError)


def _parser() -> argparse.ArgumentParser:
    from jaxdyn.experiments import EXPERIMENTS, _runner

    parser = argparse.ArgumentParser(
        prog="jaxdyn",
        description="jaxdyn: how neural networks learn, against what kernels predict.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run an experiment (see `jaxdyn list`)")
    runs = run.add_subparsers(dest="experiment", required=True, metavar="EXPERIMENT")
    for name, module in EXPERIMENTS.items():
        p = runs.add_parser(
            name,
            help=module.SUMMARY,
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument(
            "--out",
            default=f"out/{name}",
            help=f"output folder: results.json, figures, per-point files "
            f"(default out/{name}); rerunning with the same folder resumes an "
            "interrupted run",
        )
        _runner.add_arguments(p, module)
        p.add_argument("--quiet", action="store_true", help="no progress bar")
    sub.add_parser("list", help="list the experiments")
    sub.add_parser("info", help="versions, devices and floating-point defaults")
    return parser


def _info() -> None:
    from jaxdyn import results

    env = results.environment()
    for key, value in env.items():
        if key not in ("devices", "x64_enabled"):
            print(f"{key}: {value}")
    for d in env["devices"]:
        print(f"device {d['id']}: {d['platform']} {d['kind']}")
    print(f"x64 enabled (global JAX default): {env['x64_enabled']}")
    print(
        "experiments compute in the --dtype they are given (float64 by default), enabling x64 "
        "only inside their run"
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from jaxdyn.experiments import EXPERIMENTS, _runner

    if args.command == "list":
        for name, module in EXPERIMENTS.items():
            print(f"{name:<20} {module.SUMMARY}")
        return 0
    if args.command == "info":
        _info()
        return 0
    module = EXPERIMENTS[args.experiment]
    prog = f"jaxdyn run {args.experiment}"
    try:
        settings = _runner.settings_from_args(module, args)
        # Every setting is checked before the experiment claims --out, so a corrected command
        # is not refused for the same folder; messages name the flags.
        _runner.validate(settings, _runner.flag)
        results = module.run(settings, args.out, progress=None if args.quiet else ProgressBar())
    except _USER_ERRORS as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 2
    for line in getattr(module, "summary_lines", lambda r: ())(results):
        print(line)
    print(f"wrote {args.out}/results.json and {', '.join(results.get('figures', []))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
