"""Score a predictions file with the project's metrics, the text used exactly as given.

python -m src.score outputs/runs/<run>/predictions.jsonl                 # the run's own metrics: its metrics.json
python -m src.score FILE.jsonl metrics=[sari,exact,bleu_nltk]            # another system's outputs
python -m src.score FILE.jsonl metrics=[bleu] bleu_lowercase=true        # uncased sacreBLEU (the paper's WMT)
python -m src.score FILE.jsonl metrics=[exact] scored_text=as_given      # the strings untouched (default: canonical)

Each line of FILE is a JSON object with `prediction`, the reference as `reference` (a string) or `references` (a
list), and `source` (SARI needs it). Metrics: rouge1, rouge2, rougeL, rougeLsum, exact, sari, bleu, bleu_nltk
(src/metrics/text.py), each on the canonical form of the texts (`scored_text`, src/metrics/text.py). A file inside
a run directory is scored as that run was: its data.metrics, bleu_lowercase, scored_text and rouge_stemmer (given
options win). Prints a table, then the scores as one JSON object on the last line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from omegaconf import OmegaConf

from src.errors import UserError, report_user_errors
from src.metrics.text import SCORING_KEYS, SUPPORTED, GenerationMetrics, scoring_options
from src.process import setup_process


def read_predictions(path: Path) -> tuple[list[str], list[str | list[str]], list[str] | None]:
    """(predictions, references, sources or None) of a predictions file; a bad line is an error naming it."""
    if not path.is_file():
        raise UserError(
            f"{path} does not exist. Fix: give a predictions file, e.g. outputs/runs/<run>/predictions.jsonl"
        )
    predictions, references, sources = [], [], []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as err:
            raise UserError(f"{path}:{n} is not JSON ({err}). Fix: one JSON object a line.") from None
        ref = row.get("references", row.get("reference"))
        if "prediction" not in row or ref is None:
            raise UserError(
                f"{path}:{n} lacks `prediction` or a reference (keys: {', '.join(row) or 'none'}). "
                "Fix: give `prediction` and `reference` (a string) or `references` (a list)."
            )
        predictions.append(row["prediction"])
        references.append(ref)
        sources.append(row.get("source"))
    if not predictions:
        raise UserError(f"{path} holds no predictions.")
    return predictions, references, sources if all(s is not None for s in sources) else None


def run_settings(path: Path) -> dict:
    """How the run whose directory holds `path` was scored: `metrics` and its `SCORING_KEYS`, or {}.

    A src.train run's composed config says it (data.*); an src.eval directory's metrics.json (`scoring`). A run
    made before the canonical form existed (its config names no `scored_text`) was scored as given.
    """
    composed = path.parent / ".hydra" / "config.yaml"
    data = (OmegaConf.load(composed).get("data") or {}) if composed.is_file() else {}
    if data.get("metrics"):
        return {"metrics": list(data.metrics), "scored_text": "as_given", **scoring_options(data)}
    recorded = path.parent / "metrics.json"
    scoring = json.loads(recorded.read_text()).get("scoring") if recorded.is_file() else None
    if isinstance(scoring, dict) and scoring.get("metrics"):
        return {"metrics": list(scoring["metrics"]), **scoring_options(scoring)}
    return {}


def score(path: Path, metrics: list[str] | None = None, **options) -> dict[str, float]:
    """The corpus scores (0-100) of a predictions file; `options` (`SCORING_KEYS`) win over the run's own."""
    settings = run_settings(path)
    metrics = list(metrics or settings.get("metrics") or [])
    if not metrics:
        raise UserError(
            f"which metrics? {path} is not in a run directory. Fix: metrics=[{','.join(SUPPORTED)}]"
        )
    unknown = sorted(set(metrics) - set(SUPPORTED))
    if unknown:
        raise UserError(f"unknown metrics {unknown}. Fix: choose from {', '.join(SUPPORTED)}.")
    predictions, references, sources = read_predictions(path)
    if "sari" in metrics and sources is None:
        raise UserError(f"sari needs a `source` on every line of {path}. Fix: add it, or leave sari out.")
    try:
        scorer = GenerationMetrics(metrics, **{**scoring_options(settings), **scoring_options(options)})
        scorer.update(predictions, references, sources)
    except ValueError as err:
        raise UserError(f"{path}: {err}.") from None
    return {k: float(v) for k, v in scorer.compute().items()}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    setup_process()
    with report_user_errors():
        files = [a for a in args if "=" not in a]
        if len(files) != 1 or any(a in ("-h", "--help") for a in args):
            print(__doc__)
            return 0 if files == ["-h"] or "--help" in args else 2
        options = OmegaConf.to_container(OmegaConf.from_dotlist([a for a in args if "=" in a]))
        unknown = set(options) - {"metrics", *SCORING_KEYS}
        if unknown:
            raise UserError(
                f"unknown option(s) {sorted(unknown)}. Fix: metrics=[...], bleu_lowercase=true|false, "
                "scored_text=canonical|as_given, rouge_stemmer=true|false."
            )
        metrics = options.pop("metrics", None)
        scores = score(Path(files[0]), [metrics] if isinstance(metrics, str) else metrics, **options)
        for name, value in scores.items():
            print(f"{name:>10} {value:8.2f}")
        print(json.dumps(scores))
    return 0


if __name__ == "__main__":
    sys.exit(main())
