"""Rows in the exact surface format of each task's Hub dataset (columns and text as the Hub serves them).

DiscoFuse and WikiSplit are pre-tokenized (punctuation stands apart, `'s` and `n't` detached: `did n't`,
`wo n't`); CNN/DailyMail highlights are newline-separated, some lines ending in " ." and some in no full stop;
Gigaword is lowercased and pre-tokenized with `-lrb-`, `#` for digits, `UNK` and detached `n't`; XSum and WMT14
are ordinary detokenized text with hyphens, quotes, apostrophes, umlauts and a sharp s; CNN/DailyMail and XSum
have accented names (`Arsène`, `Özil`, `Sinn Féin`, `Düsseldorf`). Written in the style of each dataset's card
and first examples.
"""

from __future__ import annotations

import json
from pathlib import Path

ROWS: dict[str, list[dict]] = {
    "discofuse": [
        {
            "incoherent_first_sentence": "The band 's first album was released in 1992 .",
            "incoherent_second_sentence": "It sold poorly .",
            "coherent_first_sentence": "The band 's first album was released in 1992 , but it sold poorly .",
            "coherent_second_sentence": "",
            "connective_string": ", but",
            "discourse_type": "PAIR_CONN",
        },
        {
            "incoherent_first_sentence": "Lieberman did n't run for re-election .",
            "incoherent_second_sentence": 'Instead , he joined the " Wall Street " firm .',
            "coherent_first_sentence": "Lieberman did n't run for re-election .",
            "coherent_second_sentence": 'Instead , he joined the " Wall Street " firm .',
            "connective_string": "",
            "discourse_type": "SINGLE_S_COORD",
        },
        {
            "incoherent_first_sentence": "The HP-41C had 63 functions .",
            "incoherent_second_sentence": "An HP model with 130 functions was released .",
            "coherent_first_sentence": "The HP-41C had 63 functions . Finally , an HP model with 130 functions "
            "was released .",
            "coherent_second_sentence": "",
            "connective_string": "Finally ,",
            "discourse_type": "PAIR_ANAPHORA",
        },
        {
            "incoherent_first_sentence": "Smith could n't attend the ceremony .",
            "incoherent_second_sentence": "He wo n't receive the award in person .",
            "coherent_first_sentence": "Smith could n't attend the ceremony , so he wo n't receive the award in "
            "person .",
            "coherent_second_sentence": "",
            "connective_string": ", so",
            "discourse_type": "PAIR_CONN",
        },
    ],
    "wikisplit": [
        {
            "complex_sentence": "' ' As she translates from one language to another , she tries to find the "
            "appropriate wording in Spanish ; her poems ( 1987-1990 ) drew critics ' attention .",
            "simple_sentence_1": "' ' As she translates from one language to another , she tries to find the "
            "appropriate wording in Spanish .",
            "simple_sentence_2": "Ergo , her poems ( 1987-1990 ) drew critics ' attention .",
        },
        {
            "complex_sentence": "Street Rod Nationals are held in Louisville , Kentucky , and the city 's "
            "population was 597,337 at the 2010 census .",
            "simple_sentence_1": "Street Rod Nationals are held in Louisville , Kentucky .",
            "simple_sentence_2": "The city 's population was 597,337 at the 2010 census .",
        },
        {
            "complex_sentence": "The film did n't receive good reviews , but it was n't a commercial failure "
            "and its sequel wo n't be delayed .",
            "simple_sentence_1": "The film did n't receive good reviews .",
            "simple_sentence_2": "However , it was n't a commercial failure and its sequel wo n't be delayed .",
        },
    ],
    "cnn_dailymail": [
        {
            "article": "LONDON, England (Reuters) -- Harry Potter star Daniel Radcliffe gains access to a "
            "reported £20 million ($41.1 million) fortune as he turns 18 on Monday.",
            "highlights": "Harry Potter star Daniel Radcliffe gets £20M fortune as he turns 18 Monday .\n"
            "Young actor says he has no plans to fritter his cash away .\n"
            "Radcliffe's earnings from first five Potter films have been held in trust fund",
            "id": "42c027e4ff9730fbb3de84c1af0d2c506e41c3e4",
        },
        {
            "article": "Washington (CNN) -- President Obama asked Congress on Saturday to approve "
            "military action against Syria.",
            "highlights": "Syrian official: Obama climbed to the top of the tree, \"doesn't know how to get "
            'down"\nObama sends a letter to the heads of the House and Senate .\n'
            "Aim is to determine whether CW were used, not by whom, says U.N. spokesman .",
            "id": "ee8871b15c50d0db17b0179a6d2beab35065f1e9",
        },
        {
            "article": "(CNN) -- Arsène Wenger has praised Mesut Özil after the German playmaker scored twice "
            "against Fortuna Düsseldorf on Saturday.",
            "highlights": "Arsène Wenger praises Mesut Özil after two goals .\n"
            "Özil joined from Real Madrid in 2013",
            "id": "7e2b1d0f6a4c3e5b9d8f1a2c4e6b8d0f2a4c6e8b",
        },
    ],
    "xsum": [
        {
            "document": "The full cost of damage in Newton Stewart, one of the areas worst affected, is still "
            "being assessed.\nRepair work is ongoing in Hawick.",
            "summary": "Clean-up operations are continuing across the Scottish Borders and Dumfries and "
            "Galloway after flooding caused by Storm Frank.",
            "id": "35232142",
        },
        {
            "document": "A fire alarm went off at the Holiday Inn in Hope Street at about 04:20 BST on Saturday.",
            "summary": "Two tourist buses have been destroyed by fire in a suspected arson attack in "
            "Belfast city centre - the 'worst' in years.",
            "id": "40143035",
        },
        {
            "document": "Sinn Féin's leader met the Taoiseach in Dublin on Monday to discuss the talks.",
            "summary": "Sinn Féin has said it will not return to power-sharing talks with the DUP until "
            "its demands are met.",
            "id": "38964021",
        },
    ],
    "gigaword": [
        {
            "document": "australia 's current account deficit shrunk by a record #.## billion dollars -lrb- #.## "
            "billion us -rrb- in the june quarter due to soaring commodity prices , figures released monday "
            "showed .",
            "summary": "australian current account deficit narrows sharply",
        },
        {
            "document": "at least two people were killed in a suspected bomb attack on a passenger bus in the "
            "strife-torn southern philippines on monday , the military said .",
            "summary": "at least two dead in southern philippines blast",
        },
        {
            "document": "UNK 's share price rose #.# percent to ### yen on the tokyo stock exchange .",
            "summary": "UNK shares up #.# percent",
        },
        {
            "document": "the prime minister said on friday he wo n't resign and did n't regret the decision to "
            "call early elections .",
            "summary": "prime minister says he wo n't resign",
        },
    ],
    "wmt14": [
        {
            "translation": {
                "de": "Gutach: Noch mehr Sicherheit für Fußgänger",
                "en": "Gutach: Increased safety for pedestrians",
            }
        },
        {
            "translation": {
                "de": "Sie stehen keine 100 Meter voneinander entfernt: Am Dienstag ist in Gutach die neue B "
                "33-Fußgängerampel am Dorfparkplatz in Betrieb genommen worden - in Sichtweite der älteren "
                "Rathausampel.",
                "en": "They are not even 100 metres apart: On Tuesday, the new B 33 pedestrian lights in "
                "Dorfparkplatz in Gutach became operational - within view of the existing Town Hall traffic "
                "lights.",
            }
        },
        {
            "translation": {
                "de": 'Zwei Anlagen so nah beieinander: Absicht oder Schildbürgerstreich? "Das ist ein '
                'gut-gemeinter Versuch", sagt Müller.',
                "en": "Two sets of lights so close to one another: intentional or just a well-meant act of "
                'folly? "It\'s a well-known problem," says Müller.',
            }
        },
    ],
}

#: each task config (conf/data/<name>.yaml) and the Hub dataset whose rows it reads
TASKS = {
    "discofuse": "discofuse",
    "wikisplit": "wikisplit",
    "cnn_dailymail": "cnn_dailymail",
    "cnn_dailymail_blog": "cnn_dailymail",
    "xsum": "xsum",
    "gigaword": "gigaword",
    "wmt14_de_en": "wmt14",
    "wmt14_en_de": "wmt14",
}


def write_task_dir(root: Path, dataset: str, copies: int = 1) -> Path:
    """train/validation/test.jsonl of `dataset`'s rows (each repeated `copies` times) under root/dataset."""
    out = root / dataset
    out.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ROWS[dataset] * copies)
    for split in ("train", "validation", "test"):
        (out / f"{split}.jsonl").write_text(lines, encoding="utf-8")
    return out


def all_texts() -> list[str]:
    """Every string of every row (to train tokenizers that cover them)."""
    out = []

    def walk(value):
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, str):
            out.append(value)

    for rows in ROWS.values():
        for row in rows:
            walk(row)
    return out
