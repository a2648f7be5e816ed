"""Benchmarks: a harness that times named cases side by side (``harness``) and the suites of
cases each bench config asks for (``suites``)."""

from cam_jax.bench.harness import Case, markdown, run, time_call

__all__ = ['Case', 'markdown', 'run', 'time_call']
