"""The application: ``python -m train fit|validate|test|predict|verify|export`` (LightningCLI)."""

from train.quiet import quiet_known_noise

quiet_known_noise()  # the warnings python -m train hides are hidden for `from train.module import ...` too
