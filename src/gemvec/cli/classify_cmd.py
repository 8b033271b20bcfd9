"""``gemvec classify train|zero-shot|predict|evaluate``: text classifiers on embeddings."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from gemvec.cli.options import (
    BatchSizeOption,
    DataArgument,
    DimOption,
    FormatOption,
    IdColumnOption,
    JsonOption,
    LabelColumnOption,
    ModelOption,
    PrecisionOption,
    TextColumnOption,
    echo_json,
    friendly_errors,
    load_embedder,
    read_data,
)
from gemvec.errors import InputError

if TYPE_CHECKING:
    from gemvec.embedder import Embedder
    from gemvec.tabular import Table
    from gemvec.tasks.classify import Classifier

classify_app = typer.Typer(
    help="Train, apply and evaluate text classifiers on embeddings (logistic regression or zero-shot).",
    no_args_is_help=True,
)

ClassifierOutOption = Annotated[
    Path, typer.Option("--output", "--out", "-o", help="Classifier file to write (.npz).")
]


@classify_app.command("train")
@friendly_errors
def train_command(
    data: DataArgument,
    out: ClassifierOutOption,
    text_column: TextColumnOption = "text",
    label_column: LabelColumnOption = "label",
    format: FormatOption = None,
    folds: Annotated[int, typer.Option("--folds", min=0, help="Cross-validation folds (0: skip).")] = 5,
    c: Annotated[float, typer.Option("--c", min=1e-6, help="Inverse L2 regularisation strength.")] = 1.0,
    dim: DimOption = None,
    precision: PrecisionOption = None,
    model: ModelOption = None,
    batch_size: BatchSizeOption = 32,
    as_json: JsonOption = False,
) -> None:
    """Embed labelled texts (classification prompt), cross-validate, fit, and save the classifier."""
    from gemvec.tasks.classify import train

    table = read_data(data, text_column, label_column, "id", format, need_labels=True)
    embedder = load_embedder(model, precision)
    classifier, cv = train(
        embedder, table.texts, table.labels or [], dim=dim, C=c, folds=folds, batch_size=batch_size
    )
    classifier.save(out)
    summary = {
        "rows": len(table),
        "labels": len(classifier.classes),
        "cross_validation": classifier.info.get("cross_validation"),
        "settings": vars(classifier.settings),
        "out": str(out),
    }
    if as_json:
        echo_json(summary)
        return
    typer.echo(
        f"trained on {len(table)} texts, {len(classifier.classes)} labels ({classifier.settings.dim}-d)"
    )
    if cv is None:
        typer.echo("cross-validation skipped (--folds 0, or a label has fewer than 2 texts)")
    else:
        typer.echo(
            f"{cv.folds}-fold cross-validation: accuracy {cv.accuracy:.4f} ± {cv.accuracy_std:.4f}, "
            f"macro-F1 {cv.macro_f1:.4f} ± {cv.macro_f1_std:.4f}"
        )
    typer.echo(f"saved {out}")


@classify_app.command("zero-shot")
@friendly_errors
def zero_shot_command(
    out: ClassifierOutOption,
    labels: Annotated[
        list[str] | None,
        typer.Option("--label", "-l", help="A label, or 'label=short description'; repeat for each label."),
    ] = None,
    labels_file: Annotated[
        Path | None,
        typer.Option("--labels-file", help="One label per line: 'label' or 'label<TAB>description'."),
    ] = None,
    template: Annotated[
        str, typer.Option("--template", help="Text embedded for each label, e.g. 'This text is about {}.'")
    ] = "{}",
    scale: Annotated[
        float, typer.Option("--scale", min=1e-3, help="Softmax scale over similarities.")
    ] = 50.0,
    dim: DimOption = None,
    precision: PrecisionOption = None,
    model: ModelOption = None,
) -> None:
    """Make a classifier from label names or descriptions alone: texts get the most similar label."""
    from gemvec.tasks.classify import zero_shot

    descriptions = parse_labels(labels or [], labels_file)
    classifier = zero_shot(
        load_embedder(model, precision), descriptions, dim=dim, scale=scale, template=template
    )
    classifier.save(out)
    typer.echo(f"zero-shot classifier with {len(classifier.classes)} labels saved to {out}")


def parse_labels(labels: list[str], labels_file: Path | None) -> dict[str, str]:
    """``label`` or ``label=description`` options plus ``label[<TAB>description]`` file lines."""
    pairs = [tuple(item.split("=", 1)) if "=" in item else (item, item) for item in labels]
    if labels_file is not None:
        from gemvec.tabular import read_text

        lines = read_text(labels_file).splitlines()
        pairs += [
            tuple(line.split("\t", 1)) if "\t" in line else (line, line) for line in lines if line.strip()
        ]
    descriptions: dict[str, str] = {}
    for name, description in pairs:
        name = name.strip()
        if name in descriptions:
            raise InputError(f"Label {name!r} is given twice.")
        descriptions[name] = description.strip()
    if len(descriptions) < 2:
        raise InputError("Give at least two labels with --label or --labels-file.")
    return descriptions


def load_classifier_and_embedder(
    path: Path, model: str | None, precision: str | None
) -> tuple[Classifier, Embedder]:
    """The classifier, and the embedder its settings name (``--model`` may point elsewhere; it is checked)."""
    from gemvec.precision import parse_precision
    from gemvec.tasks.classify import Classifier

    classifier = Classifier.load(path)
    settings = classifier.settings
    if precision is not None and parse_precision(precision) is not parse_precision(settings.precision):
        raise InputError(
            f"{path} was trained with {settings.precision} vectors; "
            f"--precision {precision} would mix settings."
        )
    embedder = load_embedder(model or settings.model, settings.precision)
    settings.check(embedder)
    return classifier, embedder


def prediction_rows(
    classifier: Classifier, table: Table, probabilities, top: int | None, csv: bool
) -> list[dict]:
    rows = []
    for row, prediction in zip(table.rows, classifier.describe(probabilities, top), strict=True):
        item: dict[str, Any] = {
            "id": row.id,
            "label": prediction.label,
            "probability": prediction.probability,
        }
        if csv:
            item |= {f"p:{label}": p for label, p in prediction.probabilities.items()}
        else:
            item["probabilities"] = prediction.probabilities
        rows.append(item)
    return rows


@classify_app.command("predict")
@friendly_errors
def predict_command(
    classifier_path: Annotated[
        Path, typer.Argument(metavar="MODEL", help="Classifier file from train/zero-shot.")
    ],
    data: DataArgument,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write .jsonl or .csv (default: JSON Lines on stdout)."),
    ] = None,
    top: Annotated[
        int | None, typer.Option("--top", min=1, help="Keep the k most likely labels per row.")
    ] = None,
    text_column: TextColumnOption = "text",
    id_column: IdColumnOption = "id",
    format: FormatOption = None,
    precision: PrecisionOption = None,
    model: ModelOption = None,
    batch_size: BatchSizeOption = 32,
) -> None:
    """Label texts: id, label, its probability and the probability of every label."""
    from gemvec.tabular import write_rows

    classifier, embedder = load_classifier_and_embedder(classifier_path, model, precision)
    table = read_data(data, text_column, None, id_column, format, need_labels=False)
    probabilities = classifier.predict_proba(classifier.embed(embedder, table.texts, batch_size=batch_size))
    csv = output is not None and output.suffix.lower() == ".csv"
    write_rows(prediction_rows(classifier, table, probabilities, top, csv), output)
    if output is not None:
        typer.echo(f"wrote {len(table)} predictions to {output}", err=True)


@classify_app.command("evaluate")
@friendly_errors
def evaluate_command(
    classifier_path: Annotated[
        Path, typer.Argument(metavar="MODEL", help="Classifier file from train/zero-shot.")
    ],
    data: DataArgument,
    confusion_matrix: Annotated[
        Path | None, typer.Option("--confusion-matrix", help="Also draw the confusion matrix to this PNG.")
    ] = None,
    text_column: TextColumnOption = "text",
    label_column: LabelColumnOption = "label",
    format: FormatOption = None,
    precision: PrecisionOption = None,
    model: ModelOption = None,
    batch_size: BatchSizeOption = 32,
    as_json: JsonOption = False,
) -> None:
    """Accuracy, macro-F1 and a per-class report on labelled texts."""
    from gemvec.tasks.classify import evaluate

    classifier, embedder = load_classifier_and_embedder(classifier_path, model, precision)
    table = read_data(data, text_column, label_column, "id", format, need_labels=True)
    scores = evaluate(
        classifier, classifier.embed(embedder, table.texts, batch_size=batch_size), table.labels or []
    )
    if confusion_matrix is not None:
        from gemvec.tasks.plots import confusion_png

        confusion_png(
            scores.confusion, scores.labels, confusion_matrix, f"{classifier_path.name} on {data.name}"
        )
    if as_json:
        result = scores.to_dict()
        if confusion_matrix is not None:
            result["confusion_matrix_png"] = str(confusion_matrix)
        echo_json(result)
        return
    typer.echo(f"{scores.rows} texts: accuracy {scores.accuracy:.4f}, macro-F1 {scores.macro_f1:.4f}")
    width = max(len(label) for label in scores.per_class)
    typer.echo(f"{'label':<{width}}  precision  recall  f1      support")
    for label, s in scores.per_class.items():
        typer.echo(
            f"{label:<{width}}  {s['precision']:.4f}     {s['recall']:.4f}  {s['f1']:.4f}  {s['support']}"
        )
    unseen = sorted(set(scores.per_class) - set(classifier.classes))
    if unseen:
        typer.echo(f"note: labels the classifier never saw (always wrong): {', '.join(unseen)}", err=True)
    if confusion_matrix is not None:
        typer.echo(f"confusion matrix: {confusion_matrix}", err=True)
