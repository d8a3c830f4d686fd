"""The application: ``python -m train fit|validate|test|predict|verify|export`` (LightningCLI)."""
