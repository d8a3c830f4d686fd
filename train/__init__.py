"""The application, everything that imports Lightning: ``python -m train fit|validate|test|predict|sweep|...``.

The files, in reading order (docs/train.md, "How fit reaches the update", walks the first five):

    __main__.py              the dispatch: verify, export and sweep here, the rest to LightningCLI
    cli.py                   TwoLayerCLI: LightningCLI with the checkpoint, guard and plot callbacks
    cli_argv.py, cli_help.py the settings a command runs with (configs/digits.yaml, a checkpoint's run); the --help
    module.py                TwoLayerNetModule: the net, manual optimization; training_step runs, logs, returns
    step_blocks.py           StepBlock and StepBlockRunner: the steps of a training_step on the path chosen at fit
                             start (front door | fused | graph)
    steps.py, schedule.py    step counting (Every.crossed, lr_at, set_step, Lightning's counters, LastStep); EpochDecay
    data.py, image_data.py   data modules: device-resident splits (data.py: precision_dtype, Digits, Spiral)
    batches.py               the keyed with-replacement sampler (batch b of epoch e from (seed, e, b))
    callbacks.py             plots, predictions.csv, the run settings in checkpoints, the SGD-step progress bar
    divergence.py            DivergenceGuard: stop at the first NaN/Inf step
    verification_callback.py GradientVerification: the gradients checked against autograd during training
    checkpoint_io.py, atomic.py   atomic checkpoints, LastCheckpoint; atomic_write (temp file, fsync, rename)
    runs.py                  a checkpoint's run folder and settings, the newest last.ckpt
    export_cmd.py, sweep.py  python -m train export (checkpoint -> .npz) and sweep (Optuna)
    quiet.py                 the known-harmless warnings silenced
"""

from train.quiet import quiet_known_noise

quiet_known_noise()  # the warnings python -m train hides are hidden for `from train.module import ...` too
