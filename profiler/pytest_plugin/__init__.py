"""wattbench as a pytest plugin on top of pytest-benchmark (``pytest suites/ ...``).

* ``plugin.py``      -- options, markers, hooks and the ``wattbench`` fixture (entry point)
* ``options.py``     -- parsing ``--wattbench-*`` options (sweep specs, objectives)
* ``state.py``       -- one run's GPU: opened on first use, checked once, released at the end
* ``fixture.py``     -- one case: skip / check / time / measure / record
* ``correctness.py`` -- one check against the float64 reference (the check engine's pieces)
* ``bench_json.py``  -- device times into pytest-benchmark's stats; ``extra_info`` fields
* ``cases.py``       -- suite parametrisation: problems x markers ``quick`` / ``full``

Nothing is imported here, so loading the plugin costs little in projects that do not use it.
"""
