"""Every default that more than one layer needs, named once, each with why it is what it is.

A default written in two places drifts (the store URL was in three); the CLI, the YAML
edge, the engine and the server all read these.
"""

from __future__ import annotations

# Where state lives when neither --store nor $CANARY_STORE says: beside the working
# directory, so a first `canary deploy` works with nothing set up. CI runners throw the
# working directory away; their pipelines set a postgresql:// store (examples/ci/).
STORE_URL = "sqlite:///.canary/state.db"

# Stages and their pause: 5/25/50/100% for 10 minutes each, as Argo and Flagger users
# expect; 10 minutes is several analysis intervals at the shipped policies' 1m checks.
STAGES = (5, 25, 50, 100)
PAUSE = 600.0  # seconds per stage

# Blue-green: preview traffic carries this header (value 1); after the switch the old
# version stays routable this long while analysis goes on.
PREVIEW_HEADER = "X-Canary-Preview"
ROLLBACK_WINDOW = 600.0  # seconds

# A migration (and its compatibility check) that runs longer than this is stopped: long
# enough for a real schema change, short enough that CI does not wait an hour for a hang.
GATE_TIMEOUT = 600.0  # seconds

# A lease not renewed for this long is another controller's to take: renewed every third
# of it, so a controller that stops renewing is replaced within about 30 s.
LEASE_TTL = 30.0  # seconds
