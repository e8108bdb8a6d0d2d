"""Built-in qlora plugin (placeholder until its method lands)."""
