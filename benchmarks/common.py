"""Helpers shared by the benchmarks."""


def compiled_flops(compiled) -> float:
  """FLOPs of a compiled function by XLA's cost analysis (0 if unavailable)."""
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0]
  return float(analysis.get("flops", 0.0)) if analysis else 0.0
