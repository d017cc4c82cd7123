"""The ``gancheck`` Typer app: every command registered with its examples. Loaded by
:func:`gancheck.cli.main` inside its Ctrl-C guard (the imports below take seconds)."""

from __future__ import annotations

import typer

import gancheck.cli.audit as audit
import gancheck.cli.calibrate as calibrate
import gancheck.cli.compare as compare
import gancheck.cli.coverage as coverage
import gancheck.cli.demo as demo
import gancheck.cli.export as export
import gancheck.cli.ldr as ldr
import gancheck.cli.leakage as leakage
import gancheck.cli.report as report
import gancheck.cli.theta as theta
from gancheck.cli.common import handle_errors
from gancheck.cli.help import VERSION, Command, Group, examples

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, cls=Group, rich_markup_mode="rich",
                  help="Black-box diagnosis and calibration of GAN intra-mode collapse (Wu et al., ACM TOMM 2021).",
                  epilog=examples("gancheck demo", "gancheck audit model.onnx --n 1e5 --out runs/model",
                                  "gancheck COMMAND --help"))

EXAMPLES = {
    "audit": ("gancheck audit model.onnx --n 1e5 --embedder pixel --out runs/model",
              "gancheck audit model.onnx --n 1e6 --anchors 1e4 --embedder dlib --fail-if 'worst_mode.neighbor_fraction>0.02'",
              "gancheck audit my_pkg.gan:make_generator --latent-shape 512 --embedder insightface --align fixed",
              "gancheck audit generated_images/ --embedder pixel --anchors 500"),
    "demo": ("gancheck demo", "gancheck demo --n 1e5 --out runs/demo"),
    "theta": ("gancheck theta pairs/ --embedder dlib", "gancheck theta pairs/ --embedder insightface --align fixed --json"),
    "report": ("gancheck report runs/model", "gancheck report runs/model --fail-if 'mccs.mean_ci_high>0.45' --junit gates.xml",
               "gancheck report runs/model/calibration-rejection --before runs/model"),
    "compare": ("gancheck compare runs/released runs/candidate", "gancheck compare runs/released runs/candidate --max-increase mccs.mean=0.02 --junit compare.xml"),
    "calibrate": ("gancheck calibrate runs/model --method rejection", "gancheck calibrate runs/model --method gmm --modes 3",
                  "gancheck report runs/model/calibration-rejection --before runs/model"),
    "coverage": ("gancheck coverage model.onnx --reference real_images/ --n 1e4 --out runs/coverage",
                 "gancheck coverage model.onnx --reference real/ --attributes onnx:classifier.onnx --attribute-names glasses,hat,smile --attribute-kind multilabel"),
    "ldr": ("gancheck ldr --discriminator ckpt/D_*.onnx --data train_images/ --out ldr.parquet",
            "gancheck ldr --discriminator D_10.onnx --discriminator D_20.onnx --data train/ --weights-out weights.csv --sheet top.png"),
    "leakage": ("gancheck leakage model.onnx --train train_images/ --holdout heldout_images/ --embedder dlib --out runs/leakage",
                "gancheck leakage model.onnx --train train/ --holdout heldout/ --run runs/model --fail-if 'excess_share_ci_high>0.01' --junit leakage.xml"),
    "export-embedder": ("gancheck export-embedder dlib --out dlib_resnet.onnx",),
    "sample": ("gancheck sample model.onnx --n 64 --out grid.png",
               "gancheck sample model.onnx --calibrator runs/model/calibrator-gmm.safetensors --out calibrated.png"),
}

for _name, _command in [("audit", audit.audit), ("demo", demo.demo), ("theta", theta.theta_command), ("report", report.report),
                        ("compare", compare.compare), ("calibrate", calibrate.calibrate), ("sample", calibrate.sample),
                        ("coverage", coverage.coverage), ("ldr", ldr.ldr), ("leakage", leakage.leakage),
                        ("export-embedder", export.export_embedder)]:
    app.command(_name, cls=Command, epilog=examples(*EXAMPLES[_name]))(handle_errors(_command))
app.command("export-descriptor", cls=Command, hidden=True)(handle_errors(export.export_descriptor))  # deprecated: says so itself


@app.callback()
def _root(version: bool = VERSION) -> None:
    """Black-box diagnosis and calibration of GAN intra-mode collapse (Wu et al., ACM TOMM 2021)."""

