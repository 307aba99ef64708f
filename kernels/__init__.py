"""wattbench.kernels: what is measured -- kernel families, implementations and their Work."""
