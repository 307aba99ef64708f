"""Render a ``wattbench.points/1`` document for schedulers: Slurm (``slurm``), Kubernetes
(``kubernetes``) and a POSIX shell env file (``envfile``). ``names`` makes safe file names and
Kubernetes label syntax from untrusted text; ``yamltext`` writes YAML whose every string is a
double-quoted JSON string; ``render`` writes a chosen format into a folder."""
