"""The application, everything that imports Lightning: ``python -m train fit|validate|test|predict|sweep|...``.

The files, in reading order:

    module.py                TwoLayerNetModule: the net, manual optimization, the step path chosen at fit start
    step_blocks.py           the step paths (front door | fused | graph), step blocks, the one place steps are counted
    schedule.py              the lr of SGD step n (EpochDecay, lr_at)
    data.py, image_data.py   data modules: device-resident splits, the keyed with-replacement sampler
    callbacks.py, divergence.py, checkpoint_io.py, verification_callback.py   plots, the guard, atomic checkpoints,
                             gradient verification during training
    cli.py, __main__.py      LightningCLI and the dispatch of the other subcommands (export_cmd.py, sweep.py, verify)
    runs.py, quiet.py        a checkpoint's run folder and settings; the known-harmless warnings silenced
"""

from train.quiet import quiet_known_noise

quiet_known_noise()  # the warnings python -m train hides are hidden for `from train.module import ...` too
