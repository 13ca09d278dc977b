"""Bench stage: time, size and score deployed targets side by side, and report compression and the frontier."""
