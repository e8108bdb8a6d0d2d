"""Built-in ia3 plugin (placeholder until its method lands)."""
