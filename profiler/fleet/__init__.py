"""Fleet characterisation: a plan of problems swept on every GPU of every node.

``plan`` reads and checks a plan file; ``worker`` sweeps a plan's problems on one GPU, resuming
incomplete records and skipping complete ones; ``node`` is the node agent every engine (Slurm,
Kubernetes, Ray, a shell loop) launches: one worker process per GPU of the node, in parallel.
Results go to ``<results>/<run id>/<host>/<gpu uuid>/``.
"""
