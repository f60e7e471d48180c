"""After training: the Model Registry (versions, promotion, lock), the served model, forecasts, and the scoring of what then happened."""
