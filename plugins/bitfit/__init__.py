"""Built-in bitfit plugin (placeholder until its method lands)."""
