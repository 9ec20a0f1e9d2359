"""The service: a video landing in storage becomes a job; API, dashboard, trigger, workers, metrics."""
