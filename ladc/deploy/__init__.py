"""Deploy stage: build every artifact (export), the artifact table, runners, parity checks and the fastest choice."""
