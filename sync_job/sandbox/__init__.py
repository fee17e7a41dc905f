"""A local Pipedrive-compatible API server for the demo, tests and benchmarks."""
