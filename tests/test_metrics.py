"""Metrics: SARI on cases worked out by hand, BLEU against sacreBLEU / NLTK, ROUGE, and split accumulation."""

from __future__ import annotations

import pytest
import sacrebleu
from nltk.translate.bleu_score import corpus_bleu

from src.metrics.sari import ngram_set, sari, sari_components
from src.metrics.text import ExampleScorer, GenerationMetrics, canonical, sentences


def test_sari_perfect_output_scores_100():
    assert sari("a b c", "a b c", ["a b c"]) == pytest.approx(100.0)
    assert sari("a b", "a c", ["a c"]) == pytest.approx(100.0)


def test_sari_copying_the_source_by_hand():
    # source "a b", prediction "a b" (a copy), reference "a c".
    # 1-grams: keep P=1/2 R=1 -> 2/3; nothing deleted -> deletion precision 0/0 = 1; nothing added but "c" was
    #          wanted -> addition P=1 (0/0) R=0 -> 0.
    # 2-grams: keep "a b" not in the reference -> 0; deletion 1; addition R=0 -> 0.
    # 3-, 4-grams: empty everywhere -> 1, 1, 1.
    # keep = (2/3 + 0 + 1 + 1) / 4 = 2/3; deletion = 1; addition = (0 + 0 + 1 + 1) / 4 = 1/2
    total, keep, add, delete = sari_components("a b", "a b", ["a c"])
    assert (keep, add, delete) == pytest.approx((2 / 3, 1 / 2, 1.0))
    assert total == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)  # 72.2


def test_sari_weights_targets_by_how_many_references_hold_them():
    # source "a b", prediction "a", references ["a", "a b"]: "a" is in 2/2 references, "b" in 1/2.
    # 1-grams: keep tp=1, selected=1, relevant=1 + 0.5 -> P=1, R=2/3, F=0.8;
    #          deletion: deleted {b:1}, should delete {b: 1 - 0.5} -> tp=0.5, selected=1 -> 0.5;
    #          addition: nothing added, nothing to add -> 1.
    # 2-grams: only "a b" has one (the 1-word reference has none and does not count): keep 0, deletion 0, add 1.
    # 3-, 4-grams: 1, 1, 1.
    total, keep, add, delete = sari_components("a b", "a", ["a", "a b"])
    assert (keep, add, delete) == pytest.approx(((0.8 + 0 + 2) / 4, 1.0, (0.5 + 0 + 2) / 4))
    assert 100 * total == pytest.approx(77.5)


def test_sari_ngrams_are_sets():
    assert ngram_set(["a", "a", "a", "b"], 1) == {("a",): 1.0, ("b",): 1.0}
    assert ngram_set(["a", "b", "a", "b"], 2) == {("a", "b"): 1.0, ("b", "a"): 1.0}


def test_sari_on_the_hf_card_example_is_the_sari_hook_value():
    refs = [
        "About 95 species are currently known.",
        "About 95 species are now accepted.",
        "95 species are now accepted.",
    ]
    assert sari(
        "About 95 species are currently accepted.", "About 95 you now get in.", refs
    ) == pytest.approx(25.0)
    # with the final period split off (as HF evaluate's 13a tokenizer does) the value is the card's 26.95
    split = [r.replace(".", " .") for r in refs]
    assert sari(
        "About 95 species are currently accepted .", "About 95 you now get in .", split
    ) == pytest.approx(26.9536, abs=1e-4)


PREDS = [
    "the cat sat on the mat",
    "a quick brown fox jumps",
    "hello there general kenobi",
    "it is raining now",
]
REFS = ["the cat is on the mat", "the quick brown fox jumped", "hello there general kenobi", "it rains today"]
SRCS = ["a cat on a mat", "fox", "hello", "weather"]


def test_bleu_matches_sacrebleu_and_nltk_when_accumulated_in_pieces():
    m = GenerationMetrics(["bleu", "bleu_nltk"])
    m.update(PREDS[:2], REFS[:2], SRCS[:2])
    m.update(PREDS[2:], REFS[2:], SRCS[2:])
    got = m.compute()
    assert float(got["bleu"]) == pytest.approx(sacrebleu.corpus_bleu(PREDS, [REFS]).score, abs=1e-4)
    nltk = corpus_bleu([[r.split()] for r in REFS], [p.split() for p in PREDS])
    assert float(got["bleu_nltk"]) == pytest.approx(100 * nltk, abs=1e-4)


def test_uncased_bleu():
    cased, uncased = GenerationMetrics(["bleu"]), GenerationMetrics(["bleu"], bleu_lowercase=True)
    for m in (cased, uncased):
        m.update(["The Cat sat on the Mat today"], ["the cat sat on the mat today"])
    assert float(uncased.compute()["bleu"]) == pytest.approx(100.0)
    assert float(cased.compute()["bleu"]) < 50


def test_states_merge_like_ddp_processes():
    whole = GenerationMetrics(["rouge1", "rouge2", "rougeL", "exact", "sari", "bleu", "bleu_nltk"])
    whole.update(PREDS, REFS, SRCS)
    a, b = (GenerationMetrics(whole.names) for _ in range(2))
    a.update(PREDS[:1], REFS[:1], SRCS[:1])
    b.update(PREDS[1:], REFS[1:], SRCS[1:])
    a.merge_state(b)
    for name, value in whole.compute().items():
        assert float(a.compute()[name]) == pytest.approx(float(value), abs=1e-4), name
    assert float(whole.compute()["exact"]) == pytest.approx(25.0)


def test_rouge_lsum_uses_sentences():
    assert sentences("One. Two!  Three?") == "One.\nTwo!\nThree?"
    assert sentences("line one\nline two") == "line one\nline two"
    # in the canonical form: no split inside a number or after a one-letter word
    assert sentences("It cost 3 . 5 million . The U . S . Army said no ! then left .") == (
        "It cost 3 . 5 million .\nThe U . S . Army said no !\nthen left ."
    )
    m = GenerationMetrics(["rougeL", "rougeLsum"])
    # the same sentences in the other order: LCS over the whole text misses one, summary-level LCS does not
    m.update(["the dog barked. the cat slept."], ["the cat slept.\nthe dog barked."])
    got = m.compute()
    assert float(got["rougeLsum"]) == pytest.approx(100.0)
    assert float(got["rougeL"]) < 70


def test_unknown_metric_is_refused():
    with pytest.raises(ValueError, match="unknown metrics"):
        GenerationMetrics(["meteor"])


def test_output_health_on_cases_worked_out_by_hand():
    from src.metrics.health import collapse, output_health

    preds = ["a b c a b c", "x y", "x y", "x y"]  # 2 distinct of 4; "a b c a b c" holds 4 3-grams, 1 repeated
    refs = ["one two", "one two", "one two", "one two"]
    h = output_health(preds, refs)
    assert h == {"distinct": 50.0, "top_share": 75.0, "repeated_3grams": 25.0, "length_ratio": 1.5}
    assert collapse(h, 4) is None  # too few to judge
    assert "most common one is 75%" in collapse(output_health(preds * 2, refs * 2), 8)
    varied = [f"answer {i}" for i in range(10)]
    assert collapse(output_health(varied, varied), 10) is None


def test_a_decoder_that_says_the_same_for_every_input_raises_the_alarm(tiny, caplog):
    import logging

    from src.models.module import Seq2SeqModule

    module = Seq2SeqModule(
        model={"encoder": tiny["bert"], "decoder": tiny["bert"]}, optimizer={}, generation={"num_beams": 1}
    )
    same = ["the same answer"] * 12
    with caplog.at_level(logging.WARNING, logger="src.models.module"):
        health = module.check_outputs(same, [f"reference {i}" for i in range(12)], "val")
    assert health["distinct"] == pytest.approx(100 / 12) and health["top_share"] == 100.0
    assert "val predictions collapsed at step 0" in caplog.text and "'the same answer'" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="src.models.module"):
        module.check_outputs([f"answer {i}" for i in range(12)], same, "val")
    assert "collapsed" not in caplog.text


def test_rouge_with_and_without_stemming():
    # "runs" / "running" / "ran": Porter stemming makes the first two one word ("run"), not the third
    stemmed = GenerationMetrics(["rouge1"])
    plain = GenerationMetrics(["rouge1"], rouge_stemmer=False)
    for m in (stemmed, plain):
        m.update(["the dog runs"], ["the dog running"])
    assert float(stemmed.compute()["rouge1"]) == pytest.approx(100.0)
    assert float(plain.compute()["rouge1"]) == pytest.approx(100 * 2 / 3)


def test_t2t_bleu_is_sacrebleus_international_uncased_bleu_and_both_carry_signatures():
    hyp = ["The well-known \"song\" wasn't Müller's."]
    ref = ['the well-known "Song" was Müller\'s.']
    m = GenerationMetrics(["bleu", "bleu_t2t"], scored_text="as_given")
    m.update(hyp, ref)
    got = {k: float(v) for k, v in m.compute().items()}
    assert got["bleu_t2t"] == pytest.approx(
        sacrebleu.corpus_bleu(hyp, [ref], tokenize="intl", lowercase=True).score
    )
    assert got["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyp, [ref]).score)
    signature = m.scorer.signature()
    assert "tok:intl" in signature["bleu_t2t"] and "case:lc" in signature["bleu_t2t"]
    assert "tok:13a" in signature["bleu"] and signature["text"] == "as_given"


# WMT-style detokenized outputs: decimals, thousands, abbreviations, hyphens, quotes, umlauts. A WordPiece decoder
# writes "well - known" and "3. 5"; byte-level BPE the reference's own spelling.
WMT_REFS = [
    'The U.S. economy grew 3.5 percent, says Müller\'s well-known "report".',
    "Some 1,000 pedestrians cross the B 33 - within view of the Town Hall.",
]
WMT_PREDS = [
    'The U.S. economy grew 3.5 per cent, says Müller\'s well - known " report ".',
    "About 1,000 pedestrians cross the B 33 - within view of the town hall.",
]


def test_standard_sacrebleu_scores_the_detokenized_text_as_given_whatever_the_scored_form():
    """`sacrebleu` is sacreBLEU with its defaults on the strings as given: equal to sacrebleu.corpus_bleu on them,
    under scored_text=canonical too, while `bleu` scores the canonical form (and so differs on these strings)."""
    standard = sacrebleu.corpus_bleu(WMT_PREDS, [WMT_REFS])
    got = {}
    for form in ("canonical", "as_given"):
        m = GenerationMetrics(["bleu", "sacrebleu"], scored_text=form)
        m.update(WMT_PREDS[:1], WMT_REFS[:1])
        m.update(WMT_PREDS[1:], WMT_REFS[1:])  # accumulated in pieces, as over a split
        got[form] = {k: float(v) for k, v in m.compute().items()}
        assert got[form]["sacrebleu"] == pytest.approx(standard.score, abs=1e-4), form
    on_canonical = sacrebleu.corpus_bleu(
        [canonical(p) for p in WMT_PREDS], [[canonical(r) for r in WMT_REFS]]
    )
    assert got["canonical"]["bleu"] == pytest.approx(on_canonical.score, abs=1e-4)
    assert got["as_given"]["bleu"] == pytest.approx(standard.score, abs=1e-4)
    assert abs(on_canonical.score - standard.score) > 1.0  # the two forms differ on these strings


def test_every_metric_says_its_tool_version_text_and_signature():
    names = ["rouge2", "exact", "sari", "bleu", "bleu_t2t", "bleu_nltk", "sacrebleu"]
    provenance = ExampleScorer(names, bleu_lowercase=True).provenance()
    assert list(provenance) == names
    assert all(set(p) == {"what", "tool", "text", "signature"} for p in provenance.values())
    version = sacrebleu.__version__
    assert provenance["sacrebleu"] == {
        "what": provenance["sacrebleu"]["what"],
        "tool": f"sacrebleu {version}",
        "text": "as_given",
        "signature": f"nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:{version}",
    }
    assert provenance["bleu"]["signature"] == f"nrefs:1|case:lc|eff:no|tok:13a|smooth:exp|version:{version}"
    assert provenance["bleu"]["text"] == "canonical" and provenance["bleu_t2t"]["text"] == "canonical"
    assert (
        provenance["rouge2"]["tool"].startswith("rouge_score ")
        and "stemmer:yes" in provenance["rouge2"]["signature"]
    )
    assert provenance["bleu_nltk"]["tool"].startswith("nltk ")
    assert ExampleScorer(["exact"], scored_text="as_given").provenance()["exact"]["text"] == "as_given"


@pytest.mark.parametrize(
    ("written", "decoded"),
    [
        ("co\u00adoperation in Düsseldorf", "cooperation in Düsseldorf"),  # a soft hyphen: BERT drops it
        ("zero\u200bwidth", "zerowidth"),  # a zero-width space, dropped alike
        ("left\u200fmark and \ufffd", "leftmark and"),  # a direction mark; U+FFFD
        ("東京タワーは高い。", "東 京 タワーは 高 い 。"),  # CJK ideographs one token each (kana are not)
        ("ＡＢＣ，ﬁne", "ABC , fine"),  # NFKC: full-width forms and ligatures
    ],
)
def test_the_canonical_form_drops_invisible_characters_and_splits_cjk_as_bert_decodes_them(written, decoded):
    assert canonical(written) == canonical(decoded)
    assert canonical(canonical(written)) == canonical(written)  # idempotent


def test_invisible_characters_and_cjk_spacing_cost_no_points_but_a_wrong_character_does():
    reference, model_wrote = "東京の co\u00adoperation", "東 京 の cooperation"
    m = GenerationMetrics(["exact", "bleu"])
    m.update([model_wrote], [reference])
    assert {k: float(v) for k, v in m.compute().items()} == {"exact": 100.0, "bleu": pytest.approx(100.0)}
    m = GenerationMetrics(["exact"])
    m.update(["京 東 の cooperation"], [reference])
    assert float(m.compute()["exact"]) == 0.0
