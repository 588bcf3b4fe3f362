"""Architecture A/B harness: several codecs trained side by side on the same crops with one loss for
the same number of steps, then coded for real on held-out images (benchmarks/arch_ab.py)."""
