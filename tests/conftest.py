import os

from hypothesis import settings

# A small, deterministic hypothesis profile: CI time matters more than example count here; each property is
# still exercised on dozens of random shapes and scales.
settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True, print_blob=True)
settings.register_profile("dev", max_examples=20, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
