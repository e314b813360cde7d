"""Analyses of research results, one module per result (frequency principle, condensation,
representation dynamics, effective model complexity, modular addition). Each holds pure,
jit/vmap-able functions built on the core; its experiment lives in `jaxdyn.experiments`."""
