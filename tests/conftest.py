"""Shared test configuration. Server fixtures live beside the tests that need them."""
