"""Developer tools beside the library: benchmarks, the step profiler, `make reproduce`'s runner and the results diff."""
