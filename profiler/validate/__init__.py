"""``wattbench validate``: the GPU acceptance run -- correctness, bandwidth, timing targets and
sensor characterisation within a time budget, without changing any GPU setting."""
