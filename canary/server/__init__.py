"""`canary serve`: the controller process, its HTTP API, client, exporter and page."""
