"""The YAML edge: rollout and policy files, their loading limits and JSON Schema."""
