"""Entry point: ``python -m train SUBCOMMAND ...``.

    fit | validate | test | predict   LightningCLI (train/cli.py): --config, --print_config, dotted overrides
    verify                            gradient verification, the same as python -m verify (verify/cli.py)
    export                            checkpoint -> .npz in the reference layout (train/export_cmd.py)
    sweep                             hyperparameter search on Optuna, trials in batched steps (train/sweep.py)

verify, export and sweep are dispatched here, before LightningCLI, because they train nothing and take no Trainer.
"""
import sys

EXTRA_HELP = """
python -m train fit           trains the digits with configs/digits.yaml (val acc >= 0.97 in seconds);
                              a --config or --data replaces that file (configs/: digits, spiral, smoke, ...)
Other subcommands (dispatched before LightningCLI):
  verify              check gradients: the project's own, yours (--target FILE[:NAME]) or a class's
                      (--submissions DIR); the same as python -m verify
                      (python -m train verify --help)
  export              write a checkpoint's parameters as .npz in the NumPy reference's params layout
                      (python -m train export --help)
  predict --images D  the class of every picture file in folder D, into predictions.csv
                      (python -m train predict --images D --help)
  sweep               search lr, reg, hidden size, momentum, decay, epochs on Optuna, many nets per step
                      (python -m train sweep --help; the bare command sweeps the digits)
"""


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "verify":
        from verify.cli import main as verify_main

        return verify_main(argv[1:])
    if argv and argv[0] == "export":
        from train.export_cmd import main as export_main

        return export_main(argv[1:])
    if argv[:1] == ["predict"] and any(a.split("=")[0] == "--images" for a in argv):  # pictures, no Trainer
        from train.predict_images import main as predict_images_main

        return predict_images_main(argv[1:])
    if argv and argv[0] == "sweep":
        from train.sweep import main as sweep_main

        return sweep_main(argv[1:])
    from train.cli import run_cli

    if not argv or argv[0] in ("-h", "--help"):
        print(EXTRA_HELP)
    return run_cli(argv)


if __name__ == "__main__":
    sys.exit(main())
