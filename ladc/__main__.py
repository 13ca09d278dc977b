"""`python -m ladc ...` (also what `accelerate launch -m ladc distill ...` runs)."""

from ladc.cli import main

main()
