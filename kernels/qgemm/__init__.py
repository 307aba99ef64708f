"""Quantized GEMM families: ``w8a8`` (int8 and fp8 weights and activations) and ``w4a16``
(4-bit packed weights, fp16 / bf16 activations); layouts in ``pack`` and ``quantize``."""
