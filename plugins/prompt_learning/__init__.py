"""Built-in prompt_learning plugin (placeholder until its method lands)."""
