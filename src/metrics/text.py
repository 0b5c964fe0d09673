"""Generation metrics that accumulate over a whole split and reduce across processes.

Every metric keeps summable statistics (sums of sentence scores, or n-gram counts for corpus BLEU), so the
value over a split is the same on one process or under DDP. Scores are on the paper's 0-100 scale.

Every metric scores prediction, references and source in one form (`scored_text`): `canonical` (the default) is
the text with each punctuation mark and symbol a token of its own and single spaces (`canonical`), the form the
Hub's DiscoFuse and WikiSplit are written in. No decoder's detokenization can move it: a WordPiece decoder's
"well - known" / "functions." / "< : : : : >" and byte-level BPE's exact "well-known" / "functions ." / "<::::>"
score alike, while a wrong word or a missing capital still costs points. `as_given` scores the strings untouched.

| name | what |
|---|---|
| rouge1, rouge2, rougeL | mean ROUGE F1 (rouge_score; Porter stemming unless `rouge_stemmer=False`; no NLTK download) |
| rougeLsum | ROUGE-Lsum: summary-level LCS over sentences, split after . ! ? (newlines do not survive every decoder) |
| exact | exact match |
| sari | SARI with tensor2tensor sari_hook semantics (src.metrics.sari) |
| bleu | corpus BLEU by sacreBLEU, 13a tokenization (`bleu_lowercase` for the paper's uncased WMT BLEU) |
| bleu_t2t | corpus BLEU as tensor2tensor's t2t-bleu reports it: sacreBLEU's international tokenization, uncased |
| bleu_nltk | corpus BLEU as NLTK computes it (whitespace tokens, case-sensitive), the paper's WikiSplit BLEU |
| sacrebleu | standard sacreBLEU: default settings (13a, mixed case) on the texts as given, whatever `scored_text` |

`sacrebleu` is the one figure comparable with published sacreBLEU scores: the detokenized output and reference,
untouched. It moves with the decoder's detokenization (a WordPiece decoder's "well - known" is three 13a tokens),
which is why the other metrics compare the canonical form. `ExampleScorer.provenance` says, per metric, the tool
and version, the text form and the signature; metrics.json records it under `scoring.provenance`.
"""

from __future__ import annotations

import math
import re
import unicodedata
from importlib.metadata import PackageNotFoundError, version

import absl.logging
import numpy as np
import torch
from nltk.translate.bleu_score import brevity_penalty, closest_ref_length, modified_precision
from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU
from torchmetrics import Metric

from src.metrics.sari import sari

ROUGE_KEYS = ("rouge1", "rouge2", "rougeL", "rougeLsum")
MEAN_METRICS = (*ROUGE_KEYS, "exact", "sari")
SACREBLEU_METRICS = ("bleu", "bleu_t2t", "sacrebleu")
BLEU_METRICS = (*SACREBLEU_METRICS, "bleu_nltk")
SUPPORTED = (*MEAN_METRICS, *BLEU_METRICS)
#: metrics that score the texts as given whatever `scored_text` says (their definition is the tool's own)
AS_GIVEN_METRICS = ("sacrebleu",)
SCORED_TEXT = ("canonical", "as_given")
#: the keys of a task's data config (and of a run's) that say how it is scored, besides its metrics
SCORING_KEYS = ("bleu_lowercase", "scored_text", "rouge_stemmer")
#: the metric a comparison leads with (report chart, decoding choice), the first of these the task has
PRIMARY = ("rouge2", "sari", "bleu_t2t", "bleu", "bleu_nltk", "sacrebleu", "exact", "rougeL", "rouge1")
#: what each metric is, in a line (metrics.json's provenance, src.report and src.score name a column by it)
DESCRIPTIONS = {
    **{
        k: f"{k.replace('rouge', 'ROUGE-')} F1 (rouge_score's tokenizer: lowercase, ASCII letters and digits)"
        for k in ROUGE_KEYS
    },
    "exact": "exact match",
    "sari": "SARI, tensor2tensor's sari_hook (the paper's)",
    "bleu": "corpus BLEU, sacreBLEU 13a",
    "bleu_t2t": "corpus BLEU as tensor2tensor's t2t-bleu: sacreBLEU intl tokenization, uncased",
    "bleu_nltk": "corpus BLEU, NLTK (whitespace tokens, case-sensitive), the paper's WikiSplit BLEU",
    "sacrebleu": "standard sacreBLEU (13a, mixed case) on the detokenized texts: comparable with published "
    "sacreBLEU scores",
}
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\D)")  # . ! ? then space, then no digit
_MARK = re.compile(r"[^\w\s]|_")  # a punctuation mark or symbol: neither letter, digit nor space
# CJK ideographs, one token each as BERT's tokenizer writes them (the ranges of its _is_chinese_char)
_CJK = re.compile(
    "([\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002a6df\U0002a700-\U0002ceaf"
    "\U0002f800-\U0002fa1f])"
)


def _invisible(char: str) -> bool:
    """A character no decoder writes visibly: a control or format character (soft hyphen, zero-width space,
    direction marks; not whitespace) or U+FFFD, which BERT's tokenizer drops and byte-level BPE keeps."""
    return char == "\ufffd" or (unicodedata.category(char)[0] == "C" and not char.isspace())


def primary_metric(names) -> str | None:
    """The first of `PRIMARY` among `names`, else the first name."""
    names = list(names)
    return next((m for m in PRIMARY if m in names), names[0] if names else None)


def scoring_options(settings) -> dict:
    """The `SCORING_KEYS` a mapping (a data config, a run's settings) sets: keyword arguments of `ExampleScorer`."""
    return {k: settings[k] for k in SCORING_KEYS if settings.get(k) is not None}


def canonical(text: str) -> str:
    """The scored form of a text: NFKC, invisible characters dropped, every punctuation mark, symbol and CJK
    ideograph a token of its own, single spaces.

    "functions. Finally, an HP" and "functions . Finally , an HP" -> "functions . Finally , an HP";
    "<::::>" and "< : : : : >" -> "< : : : : >"; "well-known" and "well - known" -> "well - known";
    "co\u00adop" (a soft hyphen) -> "coop"; "東京" and "東 京" -> "東 京". Idempotent.
    """
    text = unicodedata.normalize("NFKC", text)
    if not text.isascii():
        text = _CJK.sub(r" \1 ", "".join(c for c in text if not _invisible(c)))
    return " ".join(_MARK.sub(r" \g<0> ", text).split())


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:  # a source checkout that is not installed
        return "unknown"


def quiet_rouge_scorer(keys: list[str], stemmer: bool = True):
    """rouge_score's scorer, without its "Using default tokenizer" log line (absl's level is restored after)."""
    level = absl.logging.get_verbosity()
    absl.logging.set_verbosity(absl.logging.WARNING)
    try:
        return rouge_scorer.RougeScorer(keys, use_stemmer=stemmer)
    finally:
        absl.logging.set_verbosity(level)


def normalize(text: str) -> str:
    return " ".join(text.split())


def sentences(text: str) -> str:
    """Newline-separated sentences for ROUGE-Lsum: newlines if the text has them, else split after . ! ?

    A WordPiece or SentencePiece decoder writes no newlines, and the canonical form has none: there every text is
    split the same way, by its punctuation (CNN/DailyMail's highlights that end without a full stop run into the
    next one).
    """
    text = text.strip()
    if "\n" in text:
        parts = text.splitlines()
    else:  # no split inside a number ("3 . 5") or after a one-letter word ("U . S . Army", "U.S. Army")
        parts, start = [], 0
        for end in _SENTENCE_END.finditer(text):
            words = text[start : end.start()].split()
            last = words[-2] if len(words) > 1 and words[-1] in ".!?" else words[-1].rstrip(".!?")
            if len(last.replace(".", "")) > 1 or not last.isalpha():
                parts.append(text[start : end.start()])
                start = end.end()
        parts.append(text[start:])
    return "\n".join(p.strip() for p in parts if p.strip())


class ExampleScorer:
    """Each example's summable statistics for the task's metrics, and the corpus score of any sum of them.

    One implementation behind the split's metrics (`GenerationMetrics` sums the statistics over a split) and the
    paired bootstrap (`src.metrics.significance` sums them over resampled examples). Columns per metric: a mean
    metric's sentence score in [0, 1]; sacreBLEU's hyp_len, ref_len, correct 1-4, total 1-4; NLTK's numerators
    1-4, denominators 1-4, hyp_len, ref_len.
    """

    def __init__(
        self,
        names=("rouge1", "rouge2", "rougeL", "exact"),
        bleu_lowercase: bool = False,
        scored_text: str = "canonical",
        rouge_stemmer: bool = True,
    ):
        unknown = set(names) - set(SUPPORTED)
        if unknown:
            raise ValueError(f"unknown metrics {sorted(unknown)}; supported: {', '.join(SUPPORTED)}")
        if scored_text not in SCORED_TEXT:
            raise ValueError(f"unknown scored_text {scored_text!r}; choose {' or '.join(SCORED_TEXT)}")
        self.names, self.scored_text, self.rouge_stemmer = tuple(names), scored_text, rouge_stemmer
        rouge = [k for k in self.names if k in ROUGE_KEYS]
        self._rouge = quiet_rouge_scorer(rouge, rouge_stemmer) if rouge else None
        sacre = {
            "bleu": BLEU(lowercase=bleu_lowercase),
            "bleu_t2t": BLEU(tokenize="intl", lowercase=True),
            "sacrebleu": BLEU(),
        }
        self._sacrebleu = {k: v for k, v in sacre.items() if k in self.names}
        # the signature's nrefs until examples are scored (every task has one reference)
        for bleu in self._sacrebleu.values():
            bleu.num_refs = 1

    def scored(self, text: str) -> str:
        """The form in which `text` is scored (`canonical`, or as given)."""
        return canonical(text) if self.scored_text == "canonical" else text

    def text_form(self, name: str) -> str:
        """The form metric `name` scores: `as_given` for AS_GIVEN_METRICS, else this scorer's `scored_text`."""
        return "as_given" if name in AS_GIVEN_METRICS else self.scored_text

    def provenance(self) -> dict[str, dict[str, str]]:
        """Per metric: what it is, the tool and version that computed it, the text form it scored and its
        signature (sacreBLEU's own for the sacreBLEU metrics)."""
        out = {}
        for name in self.names:
            if name in ROUGE_KEYS:
                tool = f"rouge_score {_version('rouge-score')}"
                signature = f"rouge_score|{name}|stemmer:{'yes' if self.rouge_stemmer else 'no'}|tok:default"
            elif name in SACREBLEU_METRICS:
                tool, signature = (
                    f"sacrebleu {_version('sacrebleu')}",
                    str(self._sacrebleu[name].get_signature()),
                )
            elif name == "bleu_nltk":
                tool = f"nltk {_version('nltk')}"
                signature = "nltk corpus_bleu|tok:whitespace|case:mixed|smooth:none"
            else:  # exact, sari: this project's code (src/metrics)
                tool = f"warmstart {_version('warmstart')} (src/metrics/{'sari' if name == 'sari' else 'text'}.py)"
                signature = "sari_hook|n:4|beta_del:0" if name == "sari" else "exact|whitespace-normalised"
            out[name] = {
                "what": DESCRIPTIONS[name],
                "tool": tool,
                "text": self.text_form(name),
                "signature": signature,
            }
        return out

    def signature(self) -> dict[str, str]:
        """What was computed, per metric family: the scored text, ROUGE's stemming, sacreBLEU's signatures."""
        out = {"text": self.scored_text}
        if self._rouge is not None:
            out["rouge"] = f"rouge_score|stemmer:{'yes' if self.rouge_stemmer else 'no'}"
        for name, bleu in self._sacrebleu.items():
            out[name] = str(bleu.get_signature())
        if "bleu_nltk" in self.names:
            out["bleu_nltk"] = "nltk corpus_bleu|tok:whitespace|case:mixed|smooth:none"
        return out

    @staticmethod
    def width(name: str) -> int:
        """How many statistics one example has for `name`."""
        return 1 if name in MEAN_METRICS else 10

    def statistics(
        self, predictions: list[str], references: list[str | list[str]], sources: list[str] | None = None
    ) -> dict[str, np.ndarray]:
        """{metric: array (examples, width)}. Each reference a string, or a list of strings (several references
        of one example); texts are scored as given."""
        if len(predictions) != len(references):
            raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
        if "sari" in self.names and (sources is None or len(sources) != len(predictions)):
            raise ValueError("sari needs the sources of the predictions")
        refs = [[r] if isinstance(r, str) else list(r) for r in references]
        if any(not rs for rs in refs):
            raise ValueError("every prediction needs at least one reference")
        given = list(predictions), refs  # for AS_GIVEN_METRICS
        predictions = [self.scored(p) for p in predictions]
        refs = [[self.scored(r) for r in rs] for rs in refs]
        sources = sources and [self.scored(s) for s in sources]
        out = {name: np.zeros((len(predictions), self.width(name))) for name in self.names}
        lsum = "rougeLsum" in self.names
        for i, (pred, rs) in enumerate(zip(predictions, refs, strict=True)):
            if self._rouge is not None:  # several references: the best-scoring one, per ROUGE type
                targets = [sentences(r) for r in rs] if lsum else rs
                scores = self._rouge.score_multi(targets, sentences(pred) if lsum else pred)
                for key, score in scores.items():
                    out[key][i, 0] = score.fmeasure
            if "exact" in self.names:  # whitespace is never scored (canonical text has single spaces already)
                out["exact"][i, 0] = float(any(normalize(pred) == normalize(r) for r in rs))
            if "sari" in self.names:
                out["sari"][i, 0] = sari(sources[i], pred, rs) / 100.0
            if "bleu_nltk" in self.names:
                out["bleu_nltk"][i] = _nltk_stats(pred, rs)
        if self._sacrebleu and predictions:
            if len({len(rs) for rs in refs}) != 1:
                raise ValueError("bleu needs the same number of references for every example")
            for name, bleu in self._sacrebleu.items():
                hyps, rs = given if name in AS_GIVEN_METRICS else (predictions, refs)
                streams = [list(stream) for stream in zip(*rs, strict=True)]
                bleu.num_refs = len(streams)
                out[name][:] = bleu._extract_corpus_statistics(hyps, streams)
        return out

    @staticmethod
    def corpus(name: str, summed, count: int) -> float:
        """The corpus score (0-100) of `count` examples whose statistics sum to `summed`."""
        if name in MEAN_METRICS:
            return 100.0 * float(summed[0]) / max(count, 1)
        s = [int(x) for x in summed]
        if name in SACREBLEU_METRICS:  # smoothed as sacreBLEU's corpus_bleu (its signature says smooth:exp)
            return BLEU.compute_bleu(
                correct=s[2:6], total=s[6:10], sys_len=s[0], ref_len=s[1], smooth_method="exp"
            ).score
        return _nltk_corpus_bleu(s)

    @staticmethod
    def sentence(name: str, stats) -> float:
        """One example's own score (0-100): a mean metric's sentence score; smoothed sentence BLEU for BLEU."""
        if name in MEAN_METRICS:
            return 100.0 * float(stats[0])
        s = [int(x) for x in stats]
        if name in SACREBLEU_METRICS:
            correct, total, sys_len, ref_len = s[2:6], s[6:10], s[0], s[1]
        else:
            correct, total, sys_len, ref_len = s[0:4], s[4:8], s[8], s[9]
        return BLEU.compute_bleu(
            correct=correct,
            total=total,
            sys_len=sys_len,
            ref_len=ref_len,
            smooth_method="exp",
            effective_order=True,
        ).score


class GenerationMetrics(Metric):
    """The metrics of one task, accumulated over a split (sums of `ExampleScorer` statistics).

    Args:
        names: which of `SUPPORTED` to compute.
        bleu_lowercase, scored_text, rouge_stemmer: as `ExampleScorer`'s.
    """

    full_state_update = False

    def __init__(self, names=("rouge1", "rouge2", "rougeL", "exact"), **scoring):
        super().__init__()
        self.scorer = ExampleScorer(names, **scoring)
        self.names = self.scorer.names
        for name in self.names:
            width = ExampleScorer.width(name)
            self.add_state(
                f"stats_{name}", default=torch.zeros(width, dtype=torch.float64), dist_reduce_fx="sum"
            )
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(
        self, predictions: list[str], references: list[str | list[str]], sources: list[str] | None = None
    ) -> None:
        """Add examples: each reference a string, or a list of strings (several references of one example)."""
        for name, stats in self.scorer.statistics(predictions, references, sources).items():
            getattr(self, f"stats_{name}").add_(torch.from_numpy(stats.sum(0)))
        self.count.add_(len(predictions))

    def compute(self) -> dict[str, torch.Tensor]:
        n = int(self.count)
        return {
            name: torch.tensor(
                ExampleScorer.corpus(name, getattr(self, f"stats_{name}").tolist(), n), dtype=torch.float32
            )
            for name in self.names
        }


def _nltk_stats(prediction: str, references: list[str]) -> list[float]:
    hyp, refs = prediction.split(), [r.split() for r in references]
    nums, dens = [], []
    for n in range(1, 5):
        p = modified_precision(refs, hyp, n)  # a Fraction, not normalised
        nums.append(p.numerator)
        dens.append(p.denominator)
    return [*nums, *dens, len(hyp), closest_ref_length(refs, len(hyp))]


def _nltk_corpus_bleu(stats: list[float]) -> float:
    """nltk.translate.bleu_score.corpus_bleu (uniform weights, no smoothing) from summed statistics, 0-100."""
    nums, dens, hyp_len, ref_len = stats[0:4], stats[4:8], int(stats[8]), int(stats[9])
    if any(num == 0 for num in nums):  # NLTK returns 0 when any order has no match
        return 0.0
    log_p = sum(0.25 * math.log(num / den) for num, den in zip(nums, dens, strict=True))
    return 100.0 * brevity_penalty(ref_len, hyp_len) * math.exp(log_p)
