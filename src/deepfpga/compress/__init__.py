"""Model compression: SVD factoring of fully connected layers (paper §3, §4)."""
