"""Built-in lora plugin (placeholder until its method lands)."""
