"""Stores: objects (a local folder or an S3-compatible server) and jobs (SQLite or PostgreSQL)."""
