r"""NLTK's Treebank word rules (what ``word_tokenize`` runs on each sentence): same tokens, faster.

``NLTKWordTokenizer.tokenize`` runs 25 regex substitutions on every sentence, through a wall-clock
timeout wrapper. This module runs the same rules (NLTK 3.9+, copied below in NLTK's order, on the
same ``regex`` engine, with NLTK's flags) with three shortcuts that never change a result:

1. a rule runs only when the text holds a string its pattern cannot match without (the ``[?!]``
   rule needs a ``?`` or ``!``), checked first once per review by characters, then per sentence;
   the case-insensitive contraction rules are skipped this way only for ASCII text, where
   ``(?i)`` matching and ``str.lower`` agree;
2. the end-of-sentence period rules can only match at the last ``.``, so they are tried there;
3. ``\s+ -> " "`` is skipped on printable text without a double space, which it would not change.

About 4x faster per sentence, and it spares worker processes NLTK's import (which pulls in scipy,
seconds per process). Tests check that these rules are NLTK's own, in NLTK's order, and that the
tokens equal NLTK's on the real review sample and on random strings of the characters the rules
act on.
"""

from __future__ import annotations

import re

import regex

_WHOLE, _FINAL, _SPACES, _LOWER = range(4)
PUNCTUATION_CHARS = (";", "@", "#", "$", "%", "&")
PARENS = ("[", "]", "(", ")", "{", "}", "<", ">")

# (kind, pattern, flags, template, needs): ``needs`` lists strings of which the text must hold at
# least one for the pattern to match. NLTK compiles these with the ``regex`` engine (nltk.redos).
BEFORE_PAD = [
    # starting quotes
    (_WHOLE, "([«“‘„]|[`]+)", re.U, r" \1 ", ("«", "“", "‘", "„", "`")),
    (_WHOLE, r"^\"", 0, r"``", ('"',)),
    (_WHOLE, r"(``)", 0, r" \1 ", ("``",)),
    (_WHOLE, r"([ \(\[{<])(\"|\'{2})", 0, r"\1 `` ", ('"', "''")),
    (_WHOLE, r"(?i)(?<!\w)(\')(?!(?:re|ve|ll|m|t|s|d|n)\b)(?=\w)", re.U, r"\1 ", ("'",)),
    # punctuation
    (_FINAL, r'([^\.])(\.)([\]\)}>"\'' "»”’ " r"]*+)\s*$", re.U, r"\1 \2 \3 ", None),
    (_WHOLE, r"([:,])([^\d])", 0, r" \1 \2", (":", ",")),
    (_WHOLE, r"([:,])$", 0, r" \1 ", (":", ",")),
    (_WHOLE, r"\.{2,}", re.U, r" \g<0> ", ("..",)),
    (_WHOLE, r"[;@#$%&]", 0, r" \g<0> ", PUNCTUATION_CHARS),
    (_WHOLE, r"[\u2012-\u2015]", re.U, r" \g<0> ", ("\u2012", "\u2013", "\u2014", "\u2015")),
    (_FINAL, r'([^\.])(\.)([\]\)}>"\']*)\s*$', 0, r"\1 \2\3 ", None),
    (_WHOLE, r"[?!]", 0, r" \g<0> ", ("?", "!")),
    (_WHOLE, r"([^'])' ", 0, r"\1 ' ", ("' ",)),
    (_WHOLE, r"[*]", re.U, r" \g<0> ", ("*",)),
    # parentheses and brackets, double dashes
    (_WHOLE, r"[\]\[\(\)\{\}\<\>]", 0, r" \g<0> ", PARENS),
    (_WHOLE, r"--", 0, r" -- ", ("--",)),
]
AFTER_PAD = [
    # ending quotes
    (_WHOLE, "([»”’])", re.U, r" \1 ", ("»", "”", "’")),
    (_WHOLE, r"''", 0, " '' ", ("''",)),
    (_WHOLE, r'"', 0, " '' ", ('"',)),
    (_SPACES, r"\s+", 0, " ", None),
    (_WHOLE, r"([^' ])('[sS]|'[mM]|'[dD]|') ", 0, r"\1 \2 ",
     ("' ", "'s ", "'S ", "'m ", "'M ", "'d ", "'D ")),
    (_WHOLE, r"([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) ", 0, r"\1 \2 ",
     ("'ll ", "'LL ", "'re ", "'RE ", "'ve ", "'VE ", "n't ", "N'T ")),
    # contractions (NLTK compiles these with ``re``): the lowercased text must hold the word
    (_LOWER, r"(?i)\b(can)(?#X)(not)\b", None, r" \1 \2 ", "cannot"),
    (_LOWER, r"(?i)\b(d)(?#X)('ye)\b", None, r" \1 \2 ", "d'ye"),
    (_LOWER, r"(?i)\b(gim)(?#X)(me)\b", None, r" \1 \2 ", "gimme"),
    (_LOWER, r"(?i)\b(gon)(?#X)(na)\b", None, r" \1 \2 ", "gonna"),
    (_LOWER, r"(?i)\b(got)(?#X)(ta)\b", None, r" \1 \2 ", "gotta"),
    (_LOWER, r"(?i)\b(lem)(?#X)(me)\b", None, r" \1 \2 ", "lemme"),
    (_LOWER, r"(?i)\b(more)(?#X)('n)\b", None, r" \1 \2 ", "more'n"),
    (_LOWER, r"(?i)\b(wan)(?#X)(na)(?=\s)", None, r" \1 \2 ", "wanna"),
    (_LOWER, r"(?i) ('t)(?#X)(is)\b", None, r" \1 \2 ", " 'tis"),
    (_LOWER, r"(?i) ('t)(?#X)(was)\b", None, r" \1 \2 ", " 'twas"),
]  # fmt: skip


def _compiled(rules: list) -> list:
    """``(kind, compiled, template, needs, chars)``; ``chars``: the characters of ``needs``."""
    out = []
    for kind, p, flags, template, needs in rules:
        compiled = re.compile(p) if flags is None else regex.compile(p, flags)
        chars = frozenset("".join(needs)) if kind == _WHOLE else (
            frozenset(".") if kind == _FINAL else None
        )  # fmt: skip
        out.append((kind, compiled, template, needs, chars))
    return out


_BEFORE, _AFTER = _compiled(BEFORE_PAD), _compiled(AFTER_PAD)


def active_rules(text: str) -> tuple[list, list]:
    """The rules that can match somewhere in ``text`` (a review, or one sentence).

    A rule needs one of its characters; the substitutions only add spaces, turn ``"`` into
    ``''`` or ``````, and ``''`` into ``````, so no other character ever appears.
    """
    present = set(text)
    if '"' in present:
        present.update("'`")
    elif "'" in present:
        present.add("`")
    return tuple(
        [rule for rule in rules if rule[4] is None or not rule[4].isdisjoint(present)]
        for rules in (_BEFORE, _AFTER)
    )


def _apply(rules: list, text: str) -> str:
    lower, lowered = None, None  # text.lower() (None if not ASCII) of the text ``lowered``
    for kind, compiled, template, needs, _ in rules:
        if kind == _WHOLE:
            for s in needs:
                if s in text:
                    text = compiled.sub(template, text)
                    break
        elif kind == _FINAL:
            # what follows the matched "." (closing quotes, brackets, spaces) holds no ".", so
            # the match starts right before the text's last "."
            j = text.rfind(".")
            m = compiled.match(text, j - 1) if j > 0 else None
            if m is not None:
                text = text[: m.start()] + m.expand(template) + text[m.end() :]
        elif kind == _SPACES:
            # Unicode White_Space characters are all control characters or separators
            if not text.isprintable() or "  " in text:
                text = compiled.sub(template, text)
        else:
            if lowered is not text:
                lower, lowered = (text.lower() if text.isascii() else None), text
            if lower is None or needs in lower:
                text = compiled.sub(template, text)
    return text


def treebank_words(sentence: str, rules: tuple[list, list] | None = None) -> list[str]:
    """``nltk.tokenize.NLTKWordTokenizer().tokenize(sentence)``: the same tokens.

    ``rules``: ``active_rules`` of a text holding the sentence (its review), so the rules that
    cannot match anywhere in a review are set aside once, not once per sentence.
    """
    before, after = rules or active_rules(sentence)
    return _apply(after, " " + _apply(before, sentence) + " ").split()
