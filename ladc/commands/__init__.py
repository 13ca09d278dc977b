"""The commands a user runs: tune-teacher, distill, evaluate, pipeline/demo, and predict, serve and push afterwards."""
