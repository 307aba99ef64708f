"""The attention families: causal and full prefill (FlashAttention-2 forward), split-KV decode."""
