"""Built-in bottleneck plugin (placeholder until its method lands)."""
