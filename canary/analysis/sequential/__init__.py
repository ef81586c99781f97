"""The sequential canary-vs-stable judge (docs/statistics.md)."""
