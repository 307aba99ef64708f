"""The ``wattbench`` command line (entry point: :func:`wattbench.profiler.cli.main.main`)."""
