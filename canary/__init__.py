"""canary: a progressive-delivery controller."""
