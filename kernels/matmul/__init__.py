"""The matmul family: declaration and implementations."""
