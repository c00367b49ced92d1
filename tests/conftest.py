import os

import torch
from hypothesis import HealthCheck, settings

# Small tensor ops are far faster single-threaded on this 2-core machine kind.
torch.set_num_threads(1)

settings.register_profile(
    "ci", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.register_profile("dev", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
