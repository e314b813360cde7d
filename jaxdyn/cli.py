"""The `jaxdyn` command: `jaxdyn run EXPERIMENT [options]`, `jaxdyn list`, `jaxdyn info`."""
from __future__ import annotations

import argparse
import sys
import time


class ProgressBar:
    """A dependency-free progress bar on stderr: `bar(done, total, description)`."""

    def __init__(self, stream=sys.stderr, width: int = 30):
        self.stream, self.width, self.start = stream, width, time.perf_counter()

    def __call__(self, done: int, total: int, description: str) -> None:
        frac = done / max(total, 1)
        filled = int(round(self.width * frac))
        elapsed = time.perf_counter() - self.start
        eta = elapsed / frac - elapsed if 0 < frac < 1 else 0.0
        self.stream.write(f"\r[{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} "
                          f"{elapsed:6.1f}s eta {eta:5.1f}s  {description:<32}")
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()


def _parser() -> argparse.ArgumentParser:
    from jaxdyn.experiments import EXPERIMENTS
    parser = argparse.ArgumentParser(
        prog="jaxdyn", description="jaxdyn: how neural networks learn, against what kernels predict.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run an experiment (see `jaxdyn list`)")
    runs = run.add_subparsers(dest="experiment", required=True, metavar="EXPERIMENT")
    for name, module in EXPERIMENTS.items():
        p = runs.add_parser(name, help=module.SUMMARY, description=module.__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--out", default=f"out/{name}",
                       help=f"output folder: results.json, figures, per-point files (default out/{name}); "
                            "rerunning with the same folder resumes an interrupted run")
        for flag, kwargs in module.options():
            p.add_argument(flag, **kwargs)
        p.add_argument("--quiet", action="store_true", help="no progress bar")
    sub.add_parser("list", help="list the experiments")
    sub.add_parser("info", help="versions and devices")
    return parser


def _info() -> None:
    import jax

    import jaxdyn
    print(f"jaxdyn {jaxdyn.__version__}")
    for mod in ("jax", "jaxlib", "flax", "optax", "numpy", "scipy", "matplotlib"):
        try:
            print(f"{mod} {__import__(mod).__version__}")
        except ImportError:
            print(f"{mod} not installed")
    print(f"default backend: {jax.default_backend()}, x64 enabled: {jax.config.jax_enable_x64}")
    for d in jax.devices():
        print(f"device {d.id}: {d.platform} {d.device_kind}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "list":
        from jaxdyn.experiments import EXPERIMENTS
        for name, module in EXPERIMENTS.items():
            print(f"{name:<20} {module.SUMMARY}")
        return 0
    if args.command == "info":
        _info()
        return 0
    from jaxdyn.experiments import EXPERIMENTS
    module = EXPERIMENTS[args.experiment]
    try:
        config = module.config_from_args(args)
        results = module.run(config, args.out, progress=None if args.quiet else ProgressBar())
    except (ValueError, FileNotFoundError) as err:
        print(f"jaxdyn run {args.experiment}: {err}", file=sys.stderr)
        return 2
    for line in module.summary_lines(results):
        print(line)
    print(f"wrote {args.out}/results.json and {', '.join(results['figures'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
