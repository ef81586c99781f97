"""What masking costs per message: the 14 secrets of bench/secrets_leak.py registered (all
their spellings), then redact_known on a router error line and on a full hook output.

    .venv/bin/python -m bench.secrets_masking_cost
"""

from __future__ import annotations

import timeit

from bench.secrets_leak import SECRETS
from canary.secrets import _secrets, redact_known, register_expanded


def main() -> None:
    for value in SECRETS.values():
        register_expanded([value], within=value)
    line = ("could not set 5%: `python3 router.py set --token=abc 5` failed (exit 3): "
            "refused router.py set --token=abc 5")
    output = ("x" * 99 + "\n") * 160  # 16,000 characters: the most a hook result keeps
    n = 20_000
    per_line = timeit.timeit(lambda: redact_known(line), number=n) / n
    per_output = timeit.timeit(lambda: redact_known(output), number=500) / 500
    print(f"{len(_secrets)} spellings registered")
    print(f"router error line ({len(line)} chars): {per_line * 1e6:.1f} us")
    print(f"hook output ({len(output)} chars): {per_output * 1e6:.0f} us")


if __name__ == "__main__":
    main()
