"""Stage DAG with content-addressed caching, and the forecasting pipeline built on it."""
