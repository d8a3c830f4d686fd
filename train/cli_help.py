"""The help of ``python -m train fit|validate|test|predict``: a short --help, the whole one with --trainer.help.

Usage (train/cli.py's build_cli passes it to LightningCLI)::

    LightningCLI(..., parser_class=ShortHelpParser)
    ShortHelpParser.full_help = "--trainer.help" in argv

``fit --help`` shows the model, the data, the top-level options and the Trainer's SHORT_HELP_TRAINER; the rest of
the Trainer and the checkpoint callbacks appear with ``--trainer.help``. A parse error prints one usage line, the
tip and the error, with the closest option named for a misspelt one.
"""
import argparse
import difflib
import sys

from lightning.pytorch.cli import LightningArgumentParser

# fit --help shows these Trainer options; --trainer.help shows every option
SHORT_HELP_TRAINER = ("trainer.max_epochs", "trainer.max_steps", "trainer.accelerator", "trainer.devices",
                      "trainer.precision")
CKPT_PATH_HELP = ("the checkpoint to start from: fit resumes it, validate/test/predict evaluate it, with its run's "
                  "settings unless --config is given; 'last': the newest run's last.ckpt of this model's shapes")
FULL_HELP_FLAG = "--trainer.help"


class ShortHelpParser(LightningArgumentParser):
    """LightningArgumentParser whose help and usage show the model, data and top-level options with a few of the
    Trainer's (SHORT_HELP_TRAINER); the rest of the Trainer and the checkpoint callbacks stay out of sight unless
    ``full_help`` is set (``--trainer.help``). A parse error prints one usage line, the tip and the error."""

    full_help = False
    HIDDEN_PREFIXES = ("trainer", "checkpoint", "step_checkpoint")

    def _hidden(self, action):
        dest = action.dest or ""
        top = dest.split(".", 1)[0]
        return (top in self.HIDDEN_PREFIXES and dest not in SHORT_HELP_TRAINER) or dest == "weights_only"

    def format_help(self, *args, **kwargs):
        for action in self._actions:
            if action.dest == "ckpt_path":  # Lightning's text describes its own "last", "hpc" and "registry"
                action.help = CKPT_PATH_HELP
        for group in self._action_groups:
            if any(a.dest == "ckpt_path" for a in group._group_actions):
                group.title = "The checkpoint"
        if self.full_help:
            return super().format_help(*args, **kwargs)
        hidden = [(a, a.help) for a in self._actions if self._hidden(a)]
        for action, _ in hidden:
            action.help = argparse.SUPPRESS
        try:
            text = super().format_help(*args, **kwargs)
        finally:
            for action, help_text in hidden:
                action.help = help_text
        return text

    def error(self, message, ex=None):
        """jsonargparse's error (usage line, tip, ``error: ...``, exit 2), with the closest option named for an
        unknown one (``--model.hiden_size`` -> did you mean --model.hidden_size?)."""
        parser = getattr(ex, "subcommand_parser", None) or self
        if message.startswith("unrecognized arguments:"):
            words = [w.split("=")[0] for w in message.split(":", 1)[1].split() if w.startswith("--")]
            options = list(parser._option_string_actions)  # argparse's table of option strings
            close = [match for w in words for match in difflib.get_close_matches(w, options, n=1)]
            if close:
                message += f" (did you mean {', '.join(close)}?)"
        super().error(message, ex)

    def print_usage(self, file=None):
        """One line: the full argparse usage of fit runs to ~100 lines."""
        prog = self.prog.replace(" [options]", "")
        print(f"usage: {prog} [--config FILE] [--model.NAME VALUE] [--data NAME] [--data.NAME VALUE] "
              "[--trainer.NAME VALUE] ...", file=file or sys.stdout)
