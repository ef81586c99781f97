"""A local lab of real servers (Prometheus, HAProxy, nginx, PostgreSQL, demo apps).

Used by the demo (`examples/demo.py`) and by the test suite: each server runs as a plain
process on a free loopback port and is stopped by its PID.
"""
