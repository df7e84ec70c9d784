"""`atts simulate`: project wall time and throughput of a run from recorded traces.

The project's own runner and policies run against simulated engines on a virtual clock
(`clock`); only the GPUs are modelled (`server`), from a hardware profile (`hardware`).
Outputs (tokens, PPLs) are replayed from a trace (`traces`, `engine`); see
docs/simulation.md.
"""
