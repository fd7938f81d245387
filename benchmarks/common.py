"""Helpers shared by the benchmarks."""

import platform


def compiled_flops(compiled) -> float:
  """FLOPs of a compiled function by XLA's cost analysis (0 if unavailable)."""
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0]
  return float(analysis.get("flops", 0.0)) if analysis else 0.0


def cpu_model() -> str:
  """The CPU's model name from /proc/cpuinfo, else what `platform` knows."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine() or "unknown CPU"
