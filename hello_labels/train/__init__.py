"""Fitting and checking a projector: distillation, fidelity evaluation, the CLI jobs, image refinement, and the
small student harness the demo and benchmarks use."""
