"""Harness for tests and benchmarks: federations on one machine without Flower's runtimes.

- :mod:`fedids.sim.inprocess`: the real server loop and device code in one process, calls
  made directly (no Ray, no gRPC): unit-level federations and ``fedids bench`` rounds.
- :mod:`fedids.sim.device_processes`: one OS process per device, so devices really work side
  by side (``benchmarks/stragglers.py``).

Nothing a device or the server runs in a deployment imports this package.
"""
