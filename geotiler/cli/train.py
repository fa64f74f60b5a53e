"""``geotiler train``: fit a segmentation model on a tile store (thin layer over the library)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from geotiler.cli import app
from geotiler.cli.console import console, err_console
from geotiler.cli.options import (
    CatalogOption,
    ConfigOption,
    DatasetOption,
    OverwriteOption,
    QuietOption,
    load_catalog,
    load_pipeline,
    resolve_settings,
)


@app.command()
def train(
    store: Annotated[
        Path | None, typer.Argument(help="Tile store (default: the dataset's tiles.zarr).")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", "-m", help="Model preset, preset YAML, or pixel-gbm (default: the recipe's)."
        ),
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(min=1, help="Epochs to train (instead of a time budget).")
    ] = None,
    time_budget: Annotated[
        str | None,
        typer.Option(
            "--time",
            help="Train to a time budget: 90s, 10m, 1h or auto (the default).",
            show_default=False,
        ),
    ] = None,
    baseline: Annotated[
        bool | None,
        typer.Option("--baseline/--no-baseline", help="Fit the pixel baseline beside the network."),
    ] = None,
    ensemble: Annotated[
        bool | None,
        typer.Option(
            "--ensemble/--no-ensemble",
            help="Let validation choose network, baseline or their average for predict.",
        ),
    ] = None,
    normalisation: Annotated[
        str | None,
        typer.Option(
            help="robust (1st-99th percentile clip, the default) or store (its mean/std)."
        ),
    ] = None,
    loss: Annotated[
        str | None, typer.Option(help="ce, dice, focal[:gamma], jaccard or a sum: ce+dice.")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Tiles per batch.")] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate (peak for onecycle).")] = None,
    optimizer: Annotated[str | None, typer.Option(help="adam, adamw or sgd.")] = None,
    lr_schedule: Annotated[
        str | None,
        typer.Option(
            "--lr-schedule",
            help="Learning-rate schedule: none, plateau, step, cosine or onecycle.",
        ),
    ] = None,
    gamma: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="step/plateau schedules: multiply the rate by this."),
    ] = None,
    step_size: Annotated[
        int | None, typer.Option(min=1, help="step schedule: epochs between decays.")
    ] = None,
    patience: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="plateau schedule: epochs without a better val mIoU before the rate decays.",
        ),
    ] = None,
    early_stopping: Annotated[
        int | None, typer.Option(min=0, help="Stop after N epochs without a better val mIoU.")
    ] = None,
    class_weights: Annotated[
        bool | None,
        typer.Option("--class-weights/--no-class-weights", help="Weight the loss by class."),
    ] = None,
    balance: Annotated[
        bool | None,
        typer.Option("--balance/--no-balance", help="Sample tiles by the store's weights."),
    ] = None,
    augment: Annotated[
        bool | None, typer.Option("--augment/--no-augment", help="Random flips and rotations.")
    ] = None,
    max_train_tiles: Annotated[
        int | None, typer.Option(min=1, help="Tiles drawn per epoch (default: all of train).")
    ] = None,
    device: Annotated[str | None, typer.Option(help="auto (CUDA when present), cpu, cuda.")] = None,
    workers: Annotated[int | None, typer.Option(min=0, help="DataLoader worker processes.")] = None,
    reader: Annotated[
        str | None,
        typer.Option(
            help="How tiles are read: auto (the fastest available), native, tensorstore, zarrs "
            "or zarr."
        ),
    ] = None,
    encoder_weights: Annotated[
        Path | None,
        typer.Option(
            help="Local pretrained encoder: torchvision/torchgeo ResNet .pth or Hugging Face "
            "MiT/SegFormer model.safetensors; bands are matched by name (sidecar FILE.yaml).",
            dir_okay=False,
        ),
    ] = None,
    freeze_encoder: Annotated[
        int | None,
        typer.Option(min=0, metavar="EPOCHS", help="Keep the encoder frozen for the first EPOCHS."),
    ] = None,
    encoder_lr_scale: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="Encoder learning rate = --lr x this (e.g. 0.1)."),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Random seed (same seed, same run on CPU).")
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(help="Run folder to continue from its last.pt.", file_okay=False),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Run folder (default: work/<ds>/run).")
    ] = None,
    corrections: Annotated[
        Path | None,
        typer.Option(
            help="Corrections GeoPackage from `geotiler view`: fine-tune --resume RUN on them.",
            dir_okay=False,
        ),
    ] = None,
    correction_weight: Annotated[
        float, typer.Option(min=1.0, help="Corrected tiles' sampling weight, times the top one.")
    ] = 4.0,
    overwrite: OverwriteOption = False,
    dataset: DatasetOption = None,
    config: ConfigOption = None,
    catalog: CatalogOption = None,
    quiet: QuietOption = False,
) -> None:
    """Train a segmentation model on a tile store; writes best.pt, last.pt and metrics.csv.

    With no options the recipe chooses model, batch, learning rate, loss and class weighting from
    the store (printed, and saved as plan.json) and trains to a time budget (--time auto: at most
    15 min on a CPU). A per-pixel LightGBM baseline is fitted on the same tiles and scored on the
    same validation pixels; best.pt predicts with the network, the baseline or their average,
    whichever scored best (metrics.json has all three).

    \b
    Examples:
      [bold]geotiler train[/] (the default dataset, the recipe's choices)
      [bold]geotiler train tiles.zarr --time 10m[/]
      [bold]geotiler train --model pixel-gbm[/] (the baseline alone is the model)
      [bold]geotiler train --model unet-resnet34 --loss ce+dice --epochs 40[/]
      [bold]geotiler train -m segformer-b0 --encoder-weights b0.safetensors --freeze-encoder 2[/]
      [bold]torchrun --nproc_per_node 2 -m geotiler train[/] (DDP)
      [bold]geotiler train --resume work/demo/run --epochs 20[/]
      [bold]geotiler train --corrections corrections.gpkg --resume work/demo/run --epochs 3[/]

    The last adds the corrected tiles to the store, fine-tunes a copy of the run in
    RUN-corrected, predicts the scene again and compares the scores before and after.
    """
    from geotiler.train.checkpoint import read_checkpoint
    from geotiler.train.distributed import is_main_process
    from geotiler.train.settings import TrainSettings, preset_defaults
    from geotiler.train.trainer import train as run_training

    cli = {
        "model": model, "epochs": epochs, "loss": loss, "batch_size": batch_size, "lr": lr,
        "optimizer": optimizer, "lr_schedule": lr_schedule, "gamma": gamma,
        "step_size": step_size, "patience": patience, "early_stopping": early_stopping,
        "class_weights": class_weights, "balance": balance, "augment": augment,
        "max_train_tiles": max_train_tiles, "device": device, "workers": workers, "reader": reader,
        "encoder_weights": str(encoder_weights) if encoder_weights else None, "seed": seed,
        "freeze_encoder": freeze_encoder, "encoder_lr_scale": encoder_lr_scale,
        "time": time_budget, "baseline": baseline, "ensemble": ensemble,
        "normalisation": normalisation,
    }  # fmt: skip
    pipeline = load_pipeline(config)
    if corrections is not None:
        if resume is None:
            raise typer.BadParameter("--corrections needs --resume RUN (the run to fine-tune)")
        _train_on_corrections(
            corrections, resume, store, output, cli, correction_weight, overwrite, quiet
        )
        return
    name = dataset or pipeline.get("dataset")
    base: dict[str, Any]
    if resume is not None:
        if output is not None and output.resolve() != resume.resolve():
            raise typer.BadParameter("give either --resume RUN_DIR or -o RUN_DIR, not both")
        previous = read_checkpoint(resume / "last.pt")
        base, output = dict(previous["settings"]), resume
        store = store or Path(previous["store"])
    else:
        base = preset_defaults(model or (pipeline.get("train") or {}).get("model"))
    settings = resolve_settings(
        TrainSettings, stage="train", cli=cli, pipeline=pipeline, dataset_defaults=base
    )
    if store is None or output is None:
        cat = load_catalog(catalog)
        store = store or cat.output_path("tile", name)
        output = output or cat.output_path("train", name)
    quiet = quiet or not is_main_process()
    with _Display(quiet) as display:
        result = run_training(
            store, output, settings, resume=resume is not None, overwrite=overwrite,
            callbacks=display.callbacks(),
        )  # fmt: skip
    if not quiet:
        _summary(result)
        if result.comparison:
            console.print(comparison_line(result.comparison, result.chosen), highlight=False)


def _train_on_corrections(
    corrections: Path,
    run: Path,
    store: Path | None,
    output: Path | None,
    cli: dict[str, Any],
    weight: float,
    overwrite: bool,
    quiet: bool,
) -> None:
    from geotiler.train.corrections import fine_tune_settings, train_on_corrections

    settings = fine_tune_settings(run, {k: v for k, v in cli.items() if v is not None})
    with _Display(quiet) as display:
        result = train_on_corrections(
            corrections, run, settings, store=store, output=output, weight_factor=weight,
            overwrite=overwrite, callbacks=display.callbacks(),
        )  # fmt: skip
    if quiet:
        return
    table = Table(
        title=f"fine-tuned on {result.tiles_added} corrected tiles",
        title_justify="left",
        caption=f"run {result.run_dir}" + (f"; new map {result.map}" if result.map else ""),
        caption_justify="left",
    )
    for column in ("score", "before", "after"):
        table.add_column(column, justify="left" if column == "score" else "right")
    b, a = result.before, result.after
    table.add_row(
        "corrected pixels: accuracy", _pct(b.corrected_accuracy), _pct(a.corrected_accuracy)
    )
    table.add_row("validation split: mIoU", _pct(b.val_miou), _pct(a.val_miou))
    table.add_row("validation split: accuracy", _pct(b.val_accuracy), _pct(a.val_accuracy))
    console.print(table)


class _Display:
    """A rich progress bar per epoch (batches, loss, tiles/s) and one line per finished epoch."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  {task.fields[rate]:.1f} tiles/s"),
            TimeElapsedColumn(),
            console=err_console,
            transient=True,
        )
        self.task: Any = None
        self.live = False
        self.started = 0.0
        self.tiles = 0

    def __enter__(self) -> _Display:
        # The live bar only on a terminal: elsewhere (a log, a pipe) rich draws nothing live but
        # ends with an empty line, which an interruption left above its message.
        self.live = not self.quiet and self.progress.console.is_terminal
        if self.live:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live:
            self.progress.stop()

    def callbacks(self) -> Any:
        from geotiler.train.trainer import Callbacks

        if self.quiet:
            return Callbacks()
        return Callbacks(
            on_epoch_start=self._start, on_batch=self._batch, on_epoch_end=self._end,
            on_plan=self._plan, on_stage=self._stage, on_note=self._note,
        )  # fmt: skip

    def _plan(self, plan: Any) -> None:
        table = Table(title="training plan (plan.json)", title_justify="left", box=None)
        for column in ("setting", "value", "why"):
            table.add_column(column)
        for name, choice in plan.choices.items():
            table.add_row(name, str(choice.value), "given" if choice.given else choice.reason)
        fp = plan.fingerprint
        table.caption = (
            f"{fp['train_tiles']} training / {fp['val_tiles']} validation tiles of "
            f"{fp['tile_size']} px, {len(fp['bands'])} bands, {fp['classes_present']} classes, "
            f"{fp['labelled_share']:.0%} labelled"
        )
        table.caption_justify = "left"
        self.progress.console.print(table)

    def _stage(self, what: str) -> None:
        self.progress.console.print(f"[dim]{what}...[/]")

    def _note(self, text: str) -> None:
        self.progress.console.print(text, highlight=False, soft_wrap=True)

    def _start(self, epoch: int, batches: int) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task("", total=batches, epoch=epoch, loss=0.0, rate=0.0)
        self.started, self.tiles = time.perf_counter(), 0

    def _batch(self, tiles: int, loss: float) -> None:
        self.tiles += tiles
        rate = self.tiles / max(time.perf_counter() - self.started, 1e-9)
        self.progress.update(self.task, advance=1, loss=loss, rate=rate)

    def _end(self, report: Any) -> None:
        star = " [green]best[/]" if report.is_best else ""
        planned = f"/{report.epochs}" if report.epochs else ""
        if report.budget:
            planned += f" ({report.budget})"
        others = (
            f"  (baseline {report.baseline_miou:.4f}, average {report.ensemble_miou:.4f})"
            if report.baseline_miou == report.baseline_miou
            else ""
        )
        self.progress.console.print(
            f"epoch {report.epoch}{planned}  train loss {report.train_loss:.4f}  "
            f"val loss {report.val_loss:.4f}  val mIoU {report.scores.miou:.4f}{others}  "
            f"acc {report.scores.pixel_accuracy:.4f}  {report.tiles_per_s:.1f} tiles/s{star}",
            highlight=False,
        )


def comparison_line(comparison: dict[str, float], chosen: str) -> str:
    """ "network val mIoU 0.31 vs pixel baseline 0.24 (average 0.33); predict uses: ..."."""
    from geotiler.train.ensemble import BASELINE, ENSEMBLE, NETWORK

    words = {NETWORK: "the network", BASELINE: "the pixel baseline", ENSEMBLE: "their average"}
    if NETWORK not in comparison:
        return f"pixel baseline val mIoU {_pct(comparison[BASELINE])}; best.pt is the baseline"
    return (
        f"network val mIoU {_pct(comparison[NETWORK])} vs pixel baseline "
        f"{_pct(comparison[BASELINE])} (average {_pct(comparison[ENSEMBLE])}); "
        f"best.pt predicts with {words[chosen]}"
    )


def _summary(result: Any) -> None:
    best = result.best
    table = Table(
        title=f"best epoch {result.best_epoch} of {result.epochs_run}"
        + (" (stopped early)" if result.stopped_early else ""),
        title_justify="left",
        caption=f"checkpoints and metrics.csv in {result.run_dir}",
        caption_justify="left",
    )
    for column in ("id", "class", "IoU", "Dice/F1", "precision", "recall", "pixels"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for c in best.classes:
        table.add_row(
            str(c.id), c.name, *(_pct(v) for v in (c.iou, c.dice, c.precision, c.recall)),
            f"{c.support:,}",
        )  # fmt: skip
    table.add_section()
    table.add_row("", "mIoU / pixel accuracy", _pct(best.miou), "", "", _pct(best.pixel_accuracy))
    console.print(table)


def _pct(value: float) -> str:
    return "-" if value != value else f"{value:.3f}"
