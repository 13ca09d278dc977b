"""Run directories and configs, below every stage: ladc.json, config dataclasses, locks, atomic io, machine info."""
