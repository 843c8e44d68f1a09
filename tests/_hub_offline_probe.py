"""Run by test_hub_offline.py in a fresh interpreter, so that HF_HUB_OFFLINE / HF_ENDPOINT /
HF_HUB_CACHE are read by huggingface_hub at import time exactly as for a user.

Usage: python _hub_offline_probe.py REFERENCE_LOGITS.pt SOURCE...
Prints one JSON object per source: {"source", "ok", "equal", "error", "message"}.
"""

import json
import os
import sys
import time

import torch

# huggingface_hub backs off for ~25 s (5 retries) before it gives up on an unreachable Hub
# with nothing cached; dtf checks the endpoint first so it never gets there, but should it,
# the requests still go to the closed port and only the waits are skipped
# (DTF_PROBE_REAL_SLEEP=1 keeps them, for the test that no retry happens).
if not os.environ.get("DTF_PROBE_REAL_SLEEP"):
    time.sleep = lambda seconds: None

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from _hub_helpers import logits  # noqa: E402

from dtfcli.hub import WeightsError, load_model  # noqa: E402

reference = torch.load(sys.argv[1], weights_only=True)
for source in sys.argv[2:]:
    try:
        model, info = load_model(source)
        result = {"ok": True, "equal": torch.equal(logits(model), reference), "location": info.location}
    except WeightsError as exc:  # what the CLI prints as its one-line error
        result = {"ok": False, "error": type(exc).__name__, "message": str(exc)}
    print(json.dumps({"source": source, **result}), flush=True)
