"""A stand-in for a user's traffic script, driven by the command router in tests.

    weights_cmd.py STATE set STABLE CANARY   store the split (refused while STATE.refuse exists)
    weights_cmd.py STATE get [--kv]          print it as JSON, or as "stable=N canary=N"
"""

from __future__ import annotations

import json
import os
import sys


def main(argv: list[str]) -> int:
    state, action, *rest = argv
    if action == "set":
        if os.path.exists(state + ".refuse"):
            print("traffic-tool: change refused: maintenance window", file=sys.stderr)
            return 1
        stable, canary = (int(v) for v in rest)
        with open(state, "w") as f:
            json.dump({"stable": stable, "canary": canary}, f)
        return 0
    if action == "get":
        with open(state) as f:
            split = json.load(f)
        if rest == ["--kv"]:
            print(f"stable={split['stable']} canary={split['canary']}")
        else:
            print(json.dumps(split))
        return 0
    print(f"unknown action {action}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
