"""The GNMT length penalty (data.decoding.length_penalty_form=gnmt): transformers' beam search, as it runs, ranks
finished hypotheses by log-probability / ((5 + len) / 6)^alpha, the form of tensor2tensor and the paper.

The reference is independent of transformers' search: every hypothesis a tiny model can write within the length
limit, scored by one teacher-forced pass each and ranked by the GNMT formula. With enough beams that nothing is
pruned (more than the live prefixes of the last step), beam search must return that ranking's first. The model is
one where the GNMT and len^alpha forms pick different outputs (checked), so transformers' own penalty fails it.
"""

from __future__ import annotations

import copy
import itertools
import json

import pytest
import torch
from transformers import BertConfig, BertLMHeadModel, BertModel, EncoderDecoderModel

from src.models.decoding import Decoding, GNMTLengthPenalty, check_applied, gnmt_penalty
from src.system.errors import UserError
from tests.helpers.commands import compose_train, run_cli

VOCAB, START, EOS, PAD = 6, 1, 2, 0
MAX_NEW = 4  # hypotheses of 1-4 tokens: 5^3 live prefixes at the last step
EXHAUSTIVE_BEAMS = 130  # > 5^3: no prefix is ever pruned, so beam search sees every hypothesis
ALPHA = 1.0
SOURCE = torch.tensor([[3, 4, 5, 3]])


def tiny_model(seed: int = 2) -> EncoderDecoderModel:
    """A random 1-layer BERT2BERT over 6 tokens; weights of std 0.5, so that its distributions are far from flat."""
    torch.manual_seed(seed)
    kw = {
        "vocab_size": VOCAB,
        "hidden_size": 16,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 32,
        "max_position_embeddings": 16,
        "initializer_range": 0.5,
    }
    encoder = BertModel(BertConfig(**kw))
    decoder = BertLMHeadModel(BertConfig(**kw, is_decoder=True, add_cross_attention=True))
    model = EncoderDecoderModel(encoder=encoder, decoder=decoder).eval()
    g = model.generation_config
    g.decoder_start_token_id, g.eos_token_id, g.pad_token_id = START, EOS, PAD
    return model


def every_hypothesis() -> list[tuple[int, ...]]:
    """What generate can return within MAX_NEW tokens: ending in EOS (no EOS before it), or MAX_NEW tokens long."""
    others = [t for t in range(VOCAB) if t != EOS]
    ended = [(*body, EOS) for n in range(MAX_NEW) for body in itertools.product(others, repeat=n)]
    return ended + list(itertools.product(others, repeat=MAX_NEW))


@torch.no_grad()
def log_probabilities(model, hypotheses) -> list[float]:
    """Each hypothesis' log-probability, from one teacher-forced pass (no cache, no search)."""
    out = []
    for hyp in hypotheses:
        logits = model(input_ids=SOURCE, decoder_input_ids=torch.tensor([[START, *hyp[:-1]]])).logits
        steps = logits.float().log_softmax(-1)[0]
        out.append(sum(float(steps[i, t]) for i, t in enumerate(hyp)))
    return out


def ranked(model, penalty) -> list[tuple[float, tuple[int, ...]]]:
    """Every hypothesis with its normalised score, best first (len counts the generated tokens, EOS included)."""
    hyps = every_hypothesis()
    return sorted(
        ((lp / penalty(len(h)), h) for lp, h in zip(log_probabilities(model, hyps), hyps, strict=True)),
        reverse=True,
    )


def generated(model, decoding: Decoding) -> tuple[int, ...]:
    with torch.no_grad():
        out = model.generate(SOURCE, **decoding.generate_kwargs(model.generation_config))[0, 1:].tolist()
    return tuple(out[: out.index(EOS) + 1] if EOS in out else out)


def beams(n: int, form: str | None, alpha: float = ALPHA) -> Decoding:
    return Decoding(
        num_beams=n,
        max_new_tokens=MAX_NEW,
        length_penalty=alpha,
        early_stopping=True,
        length_penalty_form=form,
    )


@pytest.fixture(scope="module")
def searched():
    """The tiny model and the exhaustive rankings of both forms (fp32)."""
    model = tiny_model()
    gnmt = ranked(model, lambda n: gnmt_penalty(n, ALPHA))
    plain = ranked(model, lambda n: n**ALPHA)
    assert gnmt[0][1] != plain[0][1], "the two forms must pick different outputs on this model"
    return model, gnmt, plain


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_gnmt_beam_search_returns_what_an_exhaustive_gnmt_ranking_puts_first(searched, precision):
    model, gnmt, plain = searched
    assert (
        model.generation_config.use_cache
    )  # the search runs with its key/value cache, as the project's does
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        before = GNMTLengthPenalty.applied
        assert generated(model, beams(EXHAUSTIVE_BEAMS, "gnmt")) == gnmt[0][1]
        check_applied(before)  # the penalty was computed by the search (it raises otherwise)
        # transformers' own penalty returns the len^alpha ranking's first, which the GNMT test would refuse
        assert generated(model, beams(EXHAUSTIVE_BEAMS, "transformers")) == plain[0][1] != gnmt[0][1]
        if precision == "bf16":  # the margin of the GNMT choice is far above bf16's rounding
            assert gnmt[0][0] - gnmt[1][0] > 0.5


def test_the_gnmt_penalty_is_tensor2tensors_formula_as_transformers_computes_it():
    alpha = GNMTLengthPenalty(0.6)
    assert 3**alpha == pytest.approx(((5 + 3) / 6) ** 0.6) and 1**alpha == pytest.approx(1.0)
    assert float(alpha) == 0.6 and alpha > 0.0 and json.loads(json.dumps({"a": alpha})) == {"a": 0.6}
    copied = copy.deepcopy(alpha)  # generate deep-copies its generation config
    assert isinstance(copied, GNMTLengthPenalty) and 7**copied == pytest.approx(2**0.6)
    assert Decoding(num_beams=4, length_penalty=0.6, length_penalty_form="gnmt").generate_kwargs() == {
        "num_beams": 4,
        "length_penalty": GNMTLengthPenalty(0.6),
    }
    assert isinstance(beams(4, "gnmt", 0.6).generate_kwargs()["length_penalty"], GNMTLengthPenalty)
    # no length penalty given: the model's own (transformers' default 1.0), in the GNMT form
    unset = Decoding(num_beams=4, length_penalty_form="gnmt").generate_kwargs(tiny_model().generation_config)
    assert isinstance(unset["length_penalty"], GNMTLengthPenalty) and unset["length_penalty"] == 1.0


def test_a_transformers_that_stops_computing_the_power_is_refused_not_followed():
    with pytest.raises(
        UserError, match="did not apply the GNMT length penalty.*length_penalty_form=transformers"
    ):
        check_applied(GNMTLengthPenalty.applied)


@pytest.mark.parametrize("n_beams", [1, 4])
def test_greedy_and_transformers_penalty_outputs_equal_plain_generate_token_for_token(n_beams):
    """On a padded batch of sources, with transformers' penalty (form unset or named) and, for greedy, the GNMT
    form too (greedy has no penalty): exactly plain `generate`'s ids."""
    model = tiny_model(seed=5)
    torch.manual_seed(0)
    sources = torch.randint(3, VOCAB, (6, 7))
    mask = torch.ones_like(sources)
    mask[::2, 4:] = 0  # three shorter sources, padded
    sources[mask == 0] = PAD
    with torch.no_grad():
        plain = model.generate(
            input_ids=sources, attention_mask=mask, num_beams=n_beams, max_new_tokens=6, length_penalty=0.6
        )
        forms = [None, "transformers"] + (["gnmt"] if n_beams == 1 else [])
        for form in forms:
            decoding = Decoding(
                num_beams=n_beams, max_new_tokens=6, length_penalty=0.6, length_penalty_form=form
            )
            ours = model.generate(
                input_ids=sources, attention_mask=mask, **decoding.generate_kwargs(model.generation_config)
            )
            assert torch.equal(ours, plain), form


def test_the_paper_preset_decodes_every_task_with_the_gnmt_form():
    for task, alpha in [
        ("wmt14_en_de", 0.6),
        ("wmt14_de_en", 0.6),
        ("cnn_dailymail", 1.0),
        ("discofuse", 1.0),
    ]:
        g = compose_train("paper=rothe2020", f"data={task}", "variant=bert2bert").data.decoding
        assert (g.num_beams, g.length_penalty, g.length_penalty_form) == (4, alpha, "gnmt"), task
    assert compose_train("data=wmt14_en_de").data.decoding.length_penalty_form is None  # transformers'


def test_an_unknown_form_is_one_error_line_naming_the_choices(tmp_path):
    proc = run_cli(
        "src.train", "data=synthetic", "data.decoding.length_penalty_form=t2t", f"hydra.run.dir={tmp_path}"
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    [line] = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert "data.decoding.length_penalty_form=t2t" in line and "gnmt" in line and "transformers" in line
    assert "Traceback" not in proc.stderr
