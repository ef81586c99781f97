"""Terminal and log output: status views, live progress, structured logs."""
