"""After training: the registry (versions, promotion, lock), the served model, forecasts, and the
scoring of forecasts against what then happened."""
