"""Talking to a running service: the API's client and the CLI's commands that use it. No server code here."""
