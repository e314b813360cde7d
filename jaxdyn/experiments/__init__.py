"""Runnable experiments, each built only on jaxdyn's public API. `EXPERIMENTS` maps the name
used by `jaxdyn run NAME` to its module (which defines NAME, SUMMARY, Config, options(),
config_from_args(args), run(config, out_dir, progress=...) and summary_lines(results))."""
from jaxdyn.experiments import linear_vs_real

EXPERIMENTS = {linear_vs_real.NAME: linear_vs_real}

__all__ = ["EXPERIMENTS"]
