"""The known-harmless warnings and tips of Lightning, silenced one by one for the CLI and the library alike.

``quiet_known_noise()`` runs when the ``train`` package is imported (train/__init__.py), so a notebook that uses
TwoLayerNetModule or the data modules sees what ``python -m train`` shows. It adds one warnings filter per message
below and drops Lightning's litlogger and litmodels tips; every other warning still shows, and matplotlib,
logging levels and torch settings are left alone.
"""
import logging
import warnings

# The data are device tensors, not DataLoaders with workers; the rest are notes about Lightning's own internals.
QUIET_WARNINGS = [
    r".*does not have many workers which may be a bottleneck.*",
    r".*The number of training batches \(\d+\) is smaller than the logging interval.*",
    r".*Your `IterableDataset` has `__len__` defined.*",
    r".*`isinstance\(treespec, LeafSpec\)` is deprecated.*",
    r"The dirpath has changed from .* won't be reloaded.*",  # validate/test/predict log to a new version
    r"Couldn.t infer the batch indices fetched from your dataloader.*",  # PredictionsCSV does not need them
    r"LightningCLI's args parameter is intended to run from within Python.*",  # python -m train passes argv
    r".*AMP with fp16 is not supported on CPU.*",  # the CLI refuses 16-mixed there instead (instantiate_trainer)
    # the step checkpoint is meant to hold the state after opt.step(): that is what an exact resume continues from
    r"Using ModelCheckpoint with manual optimization and every_n_train_steps.*",
    r"Starting from v1\.9\.0, `tensorboardX` has been removed.*",  # Trainer(logger=True) uses the CSVLogger then
]


class DropAdvert(logging.Filter):
    """Drops Lightning's "try installing litlogger / litmodels" tips, printed on every run."""

    def filter(self, record):
        message = record.getMessage()
        return "litlogger" not in message and "litmodels" not in message


def quiet_known_noise():
    """Silence QUIET_WARNINGS and the litlogger/litmodels tips (idempotent: a second call adds nothing)."""
    for pattern in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, DropAdvert) for f in logger.filters):
        logger.addFilter(DropAdvert())
