"""Replay: recordings of real traffic, pulling them from Prometheus, backtests."""
