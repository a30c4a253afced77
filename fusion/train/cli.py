"""``rgbt fit|validate|test --config experiments/<model>.yaml``: LightningCLI over the fusion modules.

The YAML names the LightningModule and the network by ``class_path`` (see ``experiments/``); any key can be
overridden on the command line (``--trainer.max_steps 2000``, ``--data.batch_size 4``). Resume a run with
``--ckpt_path <run>/checkpoints/last.ckpt``. Unless the config names loggers, every run logs to a CSV file and to
Weights & Biases, offline unless ``WANDB_MODE=online`` (``wandb sync`` uploads an offline run later;
``WANDB_MODE=disabled`` turns it off).

Several GPUs or nodes need configuration only: ``--trainer.devices 4 --trainer.strategy ddp`` (add
``--trainer.num_nodes N`` and launch on every node with torchrun or SLURM). The training data shard themselves
across processes (``trainer.use_distributed_sampler: false``, set in every config).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pickle
import sys
from pathlib import Path

from fusion.errors import RgbtError, state_dict_mismatch

DEFAULT_RUNS = "runs"


def _default_loggers(root: str) -> list:
    """CSV logs and a W&B run (offline unless ``WANDB_MODE=online``), both under the run's folder."""
    from pytorch_lightning.loggers import CSVLogger, WandbLogger

    loggers = [CSVLogger(root, name="logs")]
    mode = os.environ.get("WANDB_MODE", "offline")
    if mode != "disabled":
        name = os.path.basename(os.path.normpath(root))
        wb = WandbLogger(project="rgbt-fusion", name=name, save_dir=root, offline=mode != "online")
        # Lightning always passes anonymous=None, and W&B 0.2x+ warns on every run that the setting has no effect
        wb._wandb_init.pop("anonymous", None)
        loggers.append(wb)
    return loggers


def quiet_lightning() -> None:
    """Silence Lightning's accelerator banner ("GPU available: ...") and tips, printed once per Trainer, and
    its warning about torch's renamed pytree class (Lightning's own code; nothing a user can change)."""
    import logging
    import warnings

    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\)` is deprecated.*")

    for name in (
        "pytorch_lightning.utilities.rank_zero",
        "lightning.pytorch.utilities.rank_zero",
        "lightning_fabric.utilities.rank_zero",
    ):
        logging.getLogger(name).setLevel(logging.WARNING)


def make_cli(args: list[str], run: bool = True, datamodule_class=None):
    """Build (and by default run) the LightningCLI on ``args`` (``["fit", "--config", ...]``); the data module
    class defaults to :class:`fusion.datamodule.FusionDataModule` (detection passes its own)."""
    os.environ.setdefault("WANDB_MODE", "offline")  # never reach for an account unless asked
    os.environ.setdefault("WANDB_SILENT", "true")  # no anonymous-mode or git-root notices on every run
    os.environ.setdefault("WANDB_DISABLE_GIT", "true")
    quiet_lightning()
    from pytorch_lightning import LightningModule
    from pytorch_lightning.cli import LightningCLI, SaveConfigCallback

    from fusion.datamodule import FusionDataModule

    class FusionCLI(LightningCLI):
        def _instantiate_trainer(self, config: dict, callbacks: list):
            if config.get("logger") in (None, True):  # the config names no logger: CSV + W&B
                config["logger"] = _default_loggers(config.get("default_root_dir") or DEFAULT_RUNS)
            return super()._instantiate_trainer(config, callbacks)

        def before_fit(self) -> None:  # stop with one line before a CPU run outgrows the machine's memory
            from pytorch_lightning.accelerators import CPUAccelerator

            from fusion.train.memory import check_cpu_batch

            h = getattr(self.datamodule, "hparams", {})
            net = getattr(self.model, "model", None)
            if isinstance(self.trainer.accelerator, CPUAccelerator) and net is not None and "patch_size" in h:
                check_cpu_batch(net, h["batch_size"], h["patch_size"], type(net).__name__)
            guard_outputs(self.trainer, h)

        def _guard(self) -> None:  # validate/test/predict write logs and predictions too
            guard_outputs(self.trainer, getattr(self.datamodule, "hparams", {}))

        before_validate = before_test = before_predict = _guard

    class _SaveConfig(SaveConfigCallback):  # rerunning into the same folder must not fail on config.yaml
        def __init__(self, *a, **k):
            super().__init__(*a, **{**k, "overwrite": True})

        def setup(self, trainer, pl_module, stage: str) -> None:
            if stage == "fit":  # test/predict must not replace the record of how the checkpoint was trained
                super().setup(trainer, pl_module, stage)

    sys.argv = sys.argv[:1]  # LightningCLI reads args only (it warns when sys.argv holds them too)
    return FusionCLI(
        LightningModule,
        datamodule_class or FusionDataModule,
        subclass_mode_model=True,
        save_config_callback=_SaveConfig,
        args=args,
        run=run,
        auto_configure_optimizers=False,
        # errors come back as exceptions (main makes them one line), and flags must be spelt in full
        parser_kwargs={"exit_on_error": False, "allow_abbrev": False},
    )


def guard_outputs(trainer, hparams) -> None:
    """The run's folders (``default_root_dir``, the checkpoint folder) never touch its data folders
    (:func:`fusion.guard.check_outputs`), checked before the first write."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    from fusion.data import dataset_dir
    from fusion.guard import check_outputs

    inputs = []
    for key in ("train", "val", "test"):
        names = hparams.get(key) or []
        for name in [names] if isinstance(names, str) else names:
            with contextlib.suppress(RgbtError):  # the data module reports a missing dataset itself
                inputs.append(dataset_dir(name, hparams.get("data")))
    root = hparams.get("root")  # the detection data module's labelled dataset
    if isinstance(root, str) and Path(root).is_dir():
        inputs.append(Path(root))
    outs = {"--trainer.default_root_dir": trainer.default_root_dir}
    for cb in trainer.callbacks:
        if isinstance(cb, ModelCheckpoint) and cb.dirpath:
            outs["the checkpoint dirpath"] = cb.dirpath
    check_outputs(outs, inputs, folders=tuple(outs))


def _finish_wandb(trainer) -> None:
    """Close the command's W&B run so its files are complete when the command returns (not only when the
    process exits: a notebook, a test or ``rgbt detect compare`` goes on to start other runs)."""
    from pytorch_lightning.loggers import WandbLogger

    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger) and logger._experiment is not None:
            logger.experiment.finish()


def _arg(args: list[str], name: str) -> str | None:
    """The value of ``--name X`` or ``--name=X`` in ``args`` (the last one wins, as in jsonargparse)."""
    value = None
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            value = args[i + 1]
        elif a.startswith(name + "="):
            value = a[len(name) + 1 :]
    return value


def _ckpt_error(err: Exception, ckpt: str | None) -> RgbtError | None:
    """A checkpoint that cannot be read or does not fit the config's model, as one line; None for other errors."""
    msg, name = str(err), ckpt or "checkpoint"
    if ckpt and (isinstance(err, (pickle.UnpicklingError, EOFError)) or "PytorchStreamReader" in msg):
        kind = "truncated or corrupt" if "PytorchStreamReader" in msg else "not a torch checkpoint"
        return RgbtError(f"{name}: cannot be read ({kind}); pass a .ckpt that fit wrote, e.g. <run>/last.ckpt")
    if "Error(s) in loading state_dict" not in msg:
        return None
    first, count = state_dict_mismatch(msg)
    more = f" and {count - 1} more" if count > 1 else ""
    return RgbtError(
        f"{name}: does not fit the model in the config ({first}{more}); pass the config it was "
        f"trained with ({_saved_config(ckpt)}) or the same --model options"
    )


def _saved_config(ckpt: str | None) -> str:
    """Where fit saved the config of the run that wrote ``ckpt``: beside it, or in a log folder below or above."""
    if ckpt:
        here = os.path.dirname(os.path.abspath(ckpt))
        found = [
            f
            for d in (here, os.path.dirname(here))
            for f in [os.path.join(d, "config.yaml"), *glob.glob(os.path.join(d, "logs", "*", "config.yaml"))]
            if os.path.isfile(f)
        ]
        if found:
            return os.path.relpath(max(found, key=os.path.getmtime))
    return "fit saves it as config.yaml in the run's log folder"


def main(args: list[str], datamodule_class=None, prog: str = "rgbt") -> None:
    """Entry point for ``rgbt fit|validate|test``; config mistakes become one line."""
    ckpt = _arg(args, "--ckpt_path")
    local = ckpt and "://" not in ckpt and ckpt not in ("last", "best", "hpc", "registry")
    if local and not os.path.isfile(ckpt):  # before a logger starts a run for nothing
        raise RgbtError(f"{ckpt}: no such checkpoint; pass the .ckpt that fit wrote, e.g. <run>/last.ckpt")
    for i, a in enumerate(args):  # a missing config file: say so before jsonargparse prints its usage
        if a in ("--config", "-c") and i + 1 < len(args):
            cfg = args[i + 1]
        elif a.startswith("--config="):
            cfg = a.removeprefix("--config=")
        else:
            continue
        if cfg and not os.path.isfile(cfg):
            raise RgbtError(f"--config {cfg}: no such file; see experiments/ for the shipped configs")
    from jsonargparse import ArgumentError

    try:
        cli = make_cli(args, datamodule_class=datamodule_class)
        _finish_wandb(cli.trainer)
    except ArgumentError as e:
        msg = " ".join(str(e).split())
        raise RgbtError(f"{msg[:300]}; see {prog} {args[0]} --help") from None
    except SystemExit as e:  # jsonargparse reports config errors by exiting 2 after printing them
        if e.code not in (0, None):
            raise RgbtError(f"{prog} {args[0]}: invalid arguments or config (see the message above)") from None
        raise
    except FileNotFoundError as e:
        raise RgbtError(f"{e.filename or e}: no such file") from None
    except (RuntimeError, pickle.UnpicklingError, EOFError) as e:
        err = _ckpt_error(e, ckpt)
        if err is None:
            raise
        raise err from None
    sys.stdout.flush()
