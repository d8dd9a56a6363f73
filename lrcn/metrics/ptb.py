"""PTB tokenization exactly as the COCO caption evaluation does it, with or without Java.

pycocoevalcap runs Stanford CoreNLP 3.4.1's ``PTBTokenizer -preserveLines -lowerCase`` over all
captions joined by newlines, then drops a list of punctuation tokens. :func:`ptb_tokenize_batch`
gives the same strings without starting Java: it runs the tokenizer's own scanner, a JFlex DFA
whose tables are read at run time from the CoreNLP jar that pycocoevalcap ships (nothing is copied
into this package), and re-implements the scanner's 54 actions (pushbacks, trailing-context
rules, quote / bracket / dash / fraction / currency normalisations). The result is identical to
the Java tokenizer, token for token, including the cases where a token depends on the next
caption (an acronym at the end of one line followed by "The" on the next).

Rules that apply to both this tokenizer and the Java one (see :func:`clean_caption`):

* characters that would end a line in the Java tokenizer (CR, LF, VT, FF, U+2028, U+2029) are
  replaced by spaces, so every caption stays one line (pycocoevalcap only replaces LF and
  otherwise mis-aligns every later caption silently);
* lone surrogates (not valid Unicode, not writable as UTF-8) become U+FFFD;
* characters the tokenizer cannot tokenize, such as emoji standing alone, are deleted, as the Java
  tokenizer does (its ``untokenizable=firstDelete`` default).

Lower-casing follows Java's ``toLowerCase(Locale.ENGLISH)``, which differs from Python's only for
the capital sigma Σ: Java picks the final form ς with its own word-boundary rules (emulated in
:func:`_java_lower`). In random strings of letters, digits, punctuation and combining marks the
emulation disagrees with Java about once in 10,000 strings containing Σ, always a Σ next to a
combining accent after punctuation; real captions never showed a difference.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import struct
import subprocess
import tempfile
import unicodedata
import zipfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from lrcn.errors import DataError

# pycocoevalcap/tokenizer/ptbtokenizer.py: tokens dropped after tokenization. The bracket forms
# never match: -lowerCase has already turned -LRB- into -lrb-, which therefore stays a word.
PUNCTUATIONS = frozenset(["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":",
                          "-", "--", "...", ";"])

# characters the PTBLexer treats as a line break (found by running its DFA on every BMP character)
_LINE_BREAKS = re.compile("[\n\x0b\x0c\r\u2028\u2029]")
_LINE_BREAKS_BUT_LF = re.compile("[\x0b\x0c\r\u2028\u2029]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")

_LEXER_CLASS = "edu/stanford/nlp/process/PTBLexer.class"
_LEXER_SHA256 = "715fdfb3652cc6796f90f28442378a0c71c92b5909f1fc934f698497987b6dd0"  # CoreNLP 3.4.1
_JAR_NAME = "stanford-corenlp-3.4.1.jar"


def clean_caption(text: str) -> str:
    """``text`` with line breaks replaced by spaces and lone surrogates by U+FFFD (see module doc)."""
    text = _LINE_BREAKS.sub(" ", text)
    if _LONE_SURROGATE.search(text):
        text = _LONE_SURROGATE.sub("\ufffd", text)
    return text


def _drop_punctuation(line: str) -> str:
    """pycocoevalcap's post-processing of one output line of the Java tokenizer."""
    return " ".join(w for w in line.rstrip().split(" ") if w not in PUNCTUATIONS)


def corenlp_jar() -> Path:
    """The CoreNLP 3.4.1 jar inside the installed pycocoevalcap (optional: imported where used)."""
    import pycocoevalcap.tokenizer.ptbtokenizer as ptb_module
    return Path(ptb_module.__file__).resolve().parent / _JAR_NAME


# ---------------------------------------------------------------------------------------------
# Reading the scanner tables out of the jar
# ---------------------------------------------------------------------------------------------

def _modified_utf8_units(data: bytes) -> list[int]:
    """UTF-16 code units of a class-file string constant (Java's 'modified UTF-8')."""
    units, i, n = [], 0, len(data)
    while i < n:
        b = data[i]
        if b < 0x80:
            units.append(b)
            i += 1
        elif b >> 5 == 0b110:
            units.append(((b & 0x1F) << 6) | (data[i + 1] & 0x3F))
            i += 2
        else:
            units.append(((b & 0x0F) << 12) | ((data[i + 1] & 0x3F) << 6) | (data[i + 2] & 0x3F))
            i += 3
    return units


def _string_constants(class_file: bytes) -> dict[str, list[int]]:
    """``{field name: UTF-16 units}`` of the ``static final String`` fields of a class file."""
    count = struct.unpack_from(">H", class_file, 8)[0]
    pool: list = [None] * count
    p, i = 10, 1
    sizes = {3: 4, 4: 4, 5: 8, 6: 8, 7: 2, 8: 2, 9: 4, 10: 4, 11: 4, 12: 4, 15: 3, 16: 2, 17: 4, 18: 4, 19: 2, 20: 2}
    while i < count:
        tag = class_file[p]
        if tag == 1:                                            # CONSTANT_Utf8
            length = struct.unpack_from(">H", class_file, p + 1)[0]
            pool[i] = class_file[p + 3:p + 3 + length]
            p += 3 + length
        else:
            if tag == 8:                                        # CONSTANT_String -> utf8 index
                pool[i] = struct.unpack_from(">H", class_file, p + 1)[0]
            p += 1 + sizes[tag]
            i += 1 if tag in (5, 6) else 0                      # long and double take two slots
        i += 1
    p += 6                                                      # access, this, super
    p += 2 + 2 * struct.unpack_from(">H", class_file, p)[0]     # interfaces
    constants = {}
    n_fields = struct.unpack_from(">H", class_file, p)[0]
    p += 2
    for _ in range(n_fields):
        _, name_index, _, n_attributes = struct.unpack_from(">HHHH", class_file, p)
        p += 8
        for _ in range(n_attributes):
            attr_name, attr_len = struct.unpack_from(">HI", class_file, p)
            if pool[attr_name] == b"ConstantValue":
                value = pool[struct.unpack_from(">H", class_file, p + 6)[0]]
                if isinstance(value, int):
                    constants[pool[name_index].decode()] = _modified_utf8_units(pool[value])
            p += 6 + attr_len
    return constants


def _unpack_runs(units: list[int], minus_one: bool = False) -> np.ndarray:
    """JFlex's run-length packing: (count, value) pairs."""
    pairs = np.asarray(units, dtype=np.int64).reshape(-1, 2)
    values = pairs[:, 1] - 1 if minus_one else pairs[:, 1]
    return np.repeat(values, pairs[:, 0])


def _packed(constants: dict[str, list[int]], prefix: str, unpack: Callable) -> np.ndarray:
    names = sorted((k for k in constants if k.startswith(prefix)), key=lambda k: int(k.rsplit("_", 1)[1]))
    return np.concatenate([unpack(constants[k]) for k in names])


# ---------------------------------------------------------------------------------------------
# The scanner and its actions
# ---------------------------------------------------------------------------------------------

# Action numbers are those of the 3.4.1 scanner (its ``switch`` in ``PTBLexer.next()``).
# Trailing context of variable length: (forward DFA start, backward DFA start) for JFlex's zzFin scan.
_LOOKAHEAD = {24: (13, 14), 30: (3, 4), 40: (5, 6), 41: (16, 17), 43: (15, 14), 44: (9, 10), 47: (7, 8),
              49: (11, 12)}
_PUSHBACK = {25: 1, 26: 1, 32: 1, 34: 1, 36: 1, 42: 2, 46: 1, 48: 2, 50: 3, 51: 1, 53: 4}
_SKIP = frozenset([1, 7, 23])      # untokenizable character (deleted), whitespace, ignorable
_NEWLINE = 5
_KEEP_PERIOD = frozenset([33, 49])  # ABBREV1: return "etc." and scan its period again
_ACRONYM = 47                       # "U.S." + "."; a one-letter "I." becomes "I" + "."
_ONE_CHAR = 35                      # a quote with a fixed-length trailing context
_TRIM_SPACE = frozenset([44, 47])   # fixJFlex4SpaceAfterTokenBug


def _soft_hyphens(s: str) -> str:
    if "\xad" not in s:
        return s
    return s.replace("\xad", "") or "-"


_QUOTE_RULES = [(re.compile("[\x91\u2018\u201b\u2039]"), "`"), (re.compile("[\x92\u2019\u203a]"), "'"),
                (re.compile("[\x93\u201c\xab]"), "``"), (re.compile("[\x94\u201d\xbb]"), "''")]
_SINGLE, _DOUBLE = re.compile("&apos;|'"), re.compile('"|&quot;')


def _latex_quotes(s: str, probably_left: bool) -> str:
    s = _SINGLE.sub("`" if probably_left else "'", s)
    s = _DOUBLE.sub("``" if probably_left else "''", s)
    for pattern, replacement in _QUOTE_RULES:
        s = pattern.sub(replacement, s)
    return s


def _fractions(s: str) -> str:
    for char, text in (("\xbc", "1/4"), ("\xbd", "1/2"), ("\xbe", "3/4"), ("\u2153", "1/3"), ("\u2154", "2/3")):
        s = s.replace(char, text)
    return s


_OTHER_CURRENCY = re.compile("[\x80\xa4\u20a0\u20ac]")
_AMP = re.compile("&amp;", re.IGNORECASE)


def _currency(s: str) -> str:
    return _OTHER_CURRENCY.sub("$", s.replace("\xa2", "cents").replace("\xa3", "#"))


def _parentheses(s: str) -> str:
    return s.replace("(", "-LRB-").replace(")", "-RRB-")


_CHUNK = re.compile("[^ \n]*")        # a chunk: text up to the next space or line feed

# what each action returns for the matched text (the default is the text itself)
_EMIT: dict[int, Callable[[str], str]] = {
    2: lambda s: "<", 10: lambda s: ">",
    4: lambda s: "--" if 3 <= len(s) <= 4 else s,
    11: lambda s: "--", 13: lambda s: "...",
    14: _fractions, 15: _currency,
    16: lambda s: "-RCB-", 17: lambda s: "-LRB-", 18: lambda s: "-RRB-",
    20: lambda s: "-LCB-", 21: lambda s: "-RSB-", 22: lambda s: "-LSB-",
    8: lambda s: _latex_quotes(s, False), 36: lambda s: _latex_quotes(s, False),
    26: lambda s: _latex_quotes(s, True), 35: lambda s: _latex_quotes(s, True),
    27: lambda s: s.replace(" ", "\xa0"), 38: lambda s: s.replace(" ", "\xa0"), 39: lambda s: s.replace(" ", "\xa0"),
    28: _parentheses, 34: _parentheses, 54: lambda s: _parentheses(s.replace(" ", "\xa0")),
    37: lambda s: _AMP.sub("&", s), 51: lambda s: _AMP.sub("&", s),
    **{a: _soft_hyphens for a in (6, 12, 29, 30, 32, 40, 46)},
}


class _PTBLexer:
    """CoreNLP 3.4.1's PTBLexer with PTBTokenizer's default options plus ``tokenizeNLs``."""

    _start_state = 2                   # ZZ_LEXSTATE[YyTraditionalTreebank3]

    def __init__(self, jar: Path):
        try:
            with zipfile.ZipFile(jar) as z:
                class_file = z.read(_LEXER_CLASS)
        except (OSError, KeyError, zipfile.BadZipFile) as e:
            raise RuntimeError(f"cannot read {_LEXER_CLASS} from {jar}: {e}") from e
        if hashlib.sha256(class_file).hexdigest() != _LEXER_SHA256:
            raise RuntimeError(f"{jar} is not the CoreNLP 3.4.1 jar the pure-Python PTB tokenizer reproduces")
        c = _string_constants(class_file)
        cmap = _unpack_runs(c["ZZ_CMAP_PACKED"])
        action = _packed(c, "ZZ_ACTION_PACKED_", _unpack_runs)
        attribute = _packed(c, "ZZ_ATTRIBUTE_PACKED_", _unpack_runs)
        trans = _packed(c, "ZZ_TRANS_PACKED_", functools.partial(_unpack_runs, minus_one=True)).tolist()
        rows = _packed(c, "ZZ_ROWMAP_PACKED_", lambda u: np.asarray(u, dtype=np.int64))
        rowmap = ((rows[0::2] << 16) | rows[1::2]).tolist()
        n_classes = int(cmap.max()) + 1
        self.char_class = cmap.astype(np.uint8)                             # [65536] UTF-16 unit -> class
        self.next_state = [trans[r:r + n_classes] for r in rowmap]          # [states][classes] -> state or -1
        self.accepting = (attribute & 1).astype(bool).tolist()
        self.stops = (attribute & 8).astype(bool).tolist()                  # no outgoing transitions
        self.action = action.tolist()
        # chunk -> (lower-cased tokens joined, the same without punctuation or None), per next character
        self.memo: dict[str, dict[str, tuple[str, str | None]]] = {" ": {}, "\n": {}, "": {}}
        after_space = self._continuations(" ", 7)                          # space-like characters
        if self._continuations("\n", _NEWLINE):
            raise RuntimeError("unexpected PTB lexer tables: a line break can continue a token")
        chars = np.nonzero(np.isin(self.char_class, sorted(after_space)))[0]
        self._space_like = re.compile("[" + "".join(re.escape(chr(c)) for c in chars if c != 32) + "]")

    def _lookahead(self, cls: list[int], start: int, marked: int, forward: int, backward: int) -> int:
        """End of the token for a rule ``r1/r2`` with variable-length trailing context (JFlex 1.4)."""
        table, accepting = self.next_state, self.accepting
        fin = {}
        pos, state = start, forward
        while state != -1 and pos < marked:
            fin[pos] = accepting[state]
            state = table[state][cls[pos]]
            pos += 1
        if state != -1:
            fin[pos] = accepting[state]
            pos += 1
        while pos <= marked:
            fin[pos] = False
            pos += 1
        pos, state = marked, backward
        while not (fin[pos] and accepting[state]):
            pos -= 1
            if pos < start:
                raise RuntimeError("PTB lexer lookahead ran before the token start")
            state = table[state][cls[pos]]
        return pos

    def _continuations(self, char: str, action: int) -> frozenset[int]:
        """Character classes that can follow ``char`` inside the token it starts; checks that
        ``char`` alone is a token with ``action`` (whitespace skip or line break)."""
        state = self.next_state[self._start_state][self.char_class[ord(char)]]
        if state < 0 or not self.accepting[state] or not (self.action[state] == action or
                                                          (action in _SKIP and self.action[state] in _SKIP)):
            raise RuntimeError(f"unexpected PTB lexer tables for {char!r}")
        return frozenset(c for c, nxt in enumerate(self.next_state[state]) if nxt >= 0)

    def _scan(self, text: str, cls: list[int], pos: int, stop: int, out: list[str | None], memo: bool) -> int:
        """Run the scanner from ``pos`` until a token ends at or after ``stop``, appending the raw
        tokens (None for a line break) to ``out``; returns where the next token starts.

        With a ``memo``, the lower-cased tokens of every chunk (text between spaces / line
        breaks) are recorded under the chunk plus its following character, when the chunk's
        tokens end exactly there and no scan read further: they are then context-free.
        """
        n = len(cls)
        table, accepting, stops, actions = self.next_state, self.accepting, self.stops, self.action
        start_state = self._start_state
        chunk_end = -1
        chunk: str | None = None
        chunk_out = chunk_reach = 0
        while pos < stop:
            if memo and pos > chunk_end and (pos == 0 or text[pos - 1] in " \n") and text[pos] not in " \n":
                chunk_end = _CHUNK.match(text, pos).end()
                chunk, chunk_out, chunk_reach = text[pos:chunk_end], len(out), pos
            start = pos
            state = start_state
            act = start_state if accepting[start_state] else -1
            marked = cur = start
            while cur < n:
                state = table[state][cls[cur]]
                cur += 1
                if state < 0:
                    break
                if accepting[state]:
                    act, marked = state, cur
                    if stops[state]:
                        break
            if act < 0:
                raise RuntimeError(f"PTB lexer found no token at UTF-16 offset {start}")
            if cur > chunk_reach:
                chunk_reach = cur
            a = actions[act]
            if a in _LOOKAHEAD:
                marked = self._lookahead(cls, start, marked, *_LOOKAHEAD[a])
            elif a in _PUSHBACK:
                marked -= _PUSHBACK[a]
            elif a == _ONE_CHAR:
                marked = start + 1
            if a in _TRIM_SPACE:
                while marked > start and text[marked - 1] in " \t\n\x0b\x0c\r\x85":
                    marked -= 1
            pos = marked
            if a in _SKIP:
                pass
            elif a == _NEWLINE:
                out.append(None)
            elif a in _KEEP_PERIOD:
                out.append(text[start:marked])
                pos = marked - 1
            elif a == _ACRONYM:
                pos = marked - 1
                out.append(text[start:pos] if marked - start == 2 else text[start:marked])
            else:
                emit = _EMIT.get(a)
                out.append(emit(text[start:marked]) if emit else text[start:marked])
            if chunk is not None and pos >= chunk_end:
                tokens = out[chunk_out:]
                table_ = self.memo[text[chunk_end:chunk_end + 1]]
                if pos == chunk_end and chunk_reach <= chunk_end + 1 and None not in tokens and len(table_) < 500_000:
                    joined = " ".join(map(_java_lower, tokens))
                    # a line's trailing whitespace is stripped before punctuation is dropped: keep
                    # chunks with whitespace inside their tokens out of the fast path
                    dropped = None if any(c.isspace() for c in joined.replace(" ", "")) else _drop_punctuation(joined)
                    table_[chunk] = (joined, dropped)
                chunk = None
        return pos

    def lines(self, text: str) -> list[str]:
        """pycocoevalcap's tokenization of each line of ``text``: PTBTokenizer ``-preserveLines
        -lowerCase``, then its punctuation tokens dropped.

        A line whose chunks (split at single spaces) were all seen before with the same next
        character is assembled from the memo; any other line runs the scanner.
        """
        units = np.frombuffer(text.encode("utf-16-le", "surrogatepass"), dtype=np.uint16)
        if len(units) != len(text):    # astral characters: index by UTF-16 unit as Java does
            tokens: list[str | None] = []
            self._scan("".join(map(chr, units.tolist())), self.char_class[units].tolist(), 0, len(units), tokens,
                       memo=False)
            rejoined = (_java_lower(t.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass"))
                        if t is not None else None for t in tokens)
            return [_drop_punctuation(line) for line in self._join_lines(rejoined)]
        inner, at_newline, at_end = self.memo[" "], self.memo["\n"], self.memo[""]
        cls = None
        raw_lines = text.split("\n")
        out: list[str] = []
        current: list[str] = []                 # scanned tokens of the line not finished yet
        pos = line_end = 0
        finished = False                        # the last line came from the memo
        for i, line in enumerate(raw_lines):
            line_start, line_end = line_end, line_end + len(line) + 1     # line_end: next line's start
            last = i == len(raw_lines) - 1
            if pos >= line_end:
                continue                                                   # taken by a token spanning lines
            if pos == line_start and not current and not (line[:1] == " " or line[-1:] == " " or "  " in line
                                                          or self._space_like.search(line)):
                chunks = line.split(" ")
                hits = list(map(inner.get, chunks[:-1]))
                hits.append((at_end if last else at_newline).get(chunks[-1]))
                if None not in hits:
                    dropped = [h[1] for h in hits]
                    if None not in dropped:
                        out.append(" ".join([d for d in dropped if d]))
                        pos = line_end
                        finished = last
                        continue
            if cls is None:
                cls = self.char_class[units].tolist()
            tokens: list[str | None] = []
            pos = self._scan(text, cls, pos, min(line_end, len(text)), tokens, memo=True)
            for token in tokens:
                if token is None:
                    out.append(_drop_punctuation(" ".join(current)))
                    current = []
                else:
                    current.append(_java_lower(token))
        if not finished:
            out.append(_drop_punctuation(" ".join(current)))
        return out

    @staticmethod
    def _join_lines(tokens) -> list[str]:
        lines, current = [], []
        for token in tokens:
            if token is None:
                lines.append(" ".join(current))
                current = []
            else:
                current.append(token)
        lines.append(" ".join(current))
        return lines


def _word_kind(c: str) -> str:
    """The character class of Java's (pre-ICU) word BreakIterator rules, as one letter."""
    kinds = {".": "d", '"': "q", "'": "q", ",": "c", "\u066b": "c", "\xa2": "z", "#": "$", "^": "$",
             "\xad": "h", "\u2027": "h", "\t": " ", "\r": "r"}
    if c in kinds:
        return kinds[c]
    if c in "%&\u066a\u2030\u2031":
        return "%"
    if c in "\n\x0c\u2028\u2029":
        return "n"
    o = ord(c)
    if o == 0x3005 or 0x4E00 <= o <= 0x9FA5 or 0xF900 <= o <= 0xFA2D:
        return "k"
    category = unicodedata.category(c)
    by_category = {"Mn": "", "Me": "", "Cf": "", "Mc": "L", "Pd": "h", "Pc": "h", "Sc": "$", "Zs": " "}
    if category in by_category:
        return by_category[category]
    return {"L": "L", "N": "9"}.get(category[0], "x")


_WORD, _NUMBER = r"L+(?:[hqd]L+)*", r"9+(?:[qcd]9+)*"
_WORD_RULES = [re.compile(r) for r in (r"k+", rf"(?:{_WORD})?(?:{_NUMBER}{_WORD})*(?:{_NUMBER}[%z]?)?",
                                       rf"[$dz](?:{_NUMBER}{_WORD})*(?:{_NUMBER}[%z]?)?", r" *r?n?")]


def _inside_words(s: str) -> set[int]:
    """Positions of ``s`` that are not word boundaries for Java's word BreakIterator."""
    index = [i for i, c in enumerate(s) if _word_kind(c)]
    kinds = "".join(_word_kind(s[i]) for i in index)
    inside, p = set(), 0
    while p < len(kinds):
        end = max([m.end() for r in _WORD_RULES if (m := r.match(kinds, p))] + [p + 1])
        inside.update(range(index[p] + 1, index[end - 1] + 1))
        p = end
    return inside


def _cased(c: str) -> bool:
    return unicodedata.category(c) in ("Lu", "Ll", "Lt") or c.islower() or c.isupper()


def _java_lower(token: str) -> str:
    """``token.toLowerCase(Locale.ENGLISH)`` as Java 17 computes it."""
    if "\u03a3" not in token:
        return token.lower()
    inside = _inside_words(token)

    def final_sigma(i: int) -> bool:        # java.lang.ConditionalSpecialCasing.isFinalCased
        j = i
        while j > 0 and j in inside:
            if _cased(token[j - 1]):
                k = i + 1
                while k < len(token) and k in inside:
                    if _cased(token[k]):
                        return False
                    k += 1
                return True
            j -= 1
        return False

    return "".join(("\u03c2" if final_sigma(i) else "\u03c3") if c == "\u03a3" else c.lower()
                   for i, c in enumerate(token))


@functools.lru_cache(maxsize=1)
def _lexer() -> _PTBLexer:
    return _PTBLexer(corenlp_jar())


def _check_lines(lines: list[str], captions: Sequence[str]) -> list[str]:
    if len(lines) != len(captions):
        raise DataError(f"the PTB tokenizer returned {len(lines)} lines for {len(captions)} captions: a caption "
                        "holds text that spans lines (e.g. an unterminated <tag ... > across captions); "
                        "remove it and score again")
    return lines


def ptb_tokenize_batch(captions: Sequence[str], backend: str = "python") -> list[str]:
    """COCO-evaluation tokens of each caption, space-separated: lower-cased PTB tokens without
    pycocoevalcap's punctuation list. The captions are tokenized as one text, one per line, as
    pycocoevalcap does. ``backend="java"`` runs the Java tokenizer itself (for comparison)."""
    if backend not in _TOKENIZERS:
        raise ValueError(f"unknown tokenizer backend {backend!r}; use one of {sorted(_TOKENIZERS)}")
    return _TOKENIZERS[backend](list(captions))


def ptb_tokenize(text: str) -> str:
    """:func:`ptb_tokenize_batch` of one caption."""
    return ptb_tokenize_batch([text])[0]


def _python_tokenize(captions: list[str]) -> list[str]:
    if not captions:
        return []
    text = "\n".join(captions)
    if text.count("\n") != len(captions) - 1 or _LINE_BREAKS_BUT_LF.search(text) or _LONE_SURROGATE.search(text):
        text = "\n".join(clean_caption(c) for c in captions)
    return _check_lines(list(_tokenize_text(text)), captions)


@functools.lru_cache(maxsize=4)
def _tokenize_text(text: str) -> tuple[str, ...]:
    """Lines of a whole text; cached, since validation scores the same references every epoch."""
    return tuple(_lexer().lines(text))


def java_available() -> bool:
    """Whether a ``java`` executable is on PATH (needed by METEOR, SPICE and the Java tokenizer)."""
    return shutil.which("java") is not None


def _java_tokenize(captions: list[str]) -> list[str]:
    """pycocoevalcap's PTBTokenizer (or, if its package folder is read-only, the same command)."""
    if not captions:
        return []
    if not java_available():
        raise RuntimeError("java not found on PATH")
    cleaned = [clean_caption(c) for c in captions]
    jar = corenlp_jar()
    if os.access(jar.parent, os.W_OK):
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
        result = PTBTokenizer().tokenize({i: [{"caption": c}] for i, c in enumerate(cleaned)})
        if len(result) != len(captions):
            _check_lines([""] * len(result), captions)
        return [result[i][0] for i in range(len(captions))]
    with tempfile.NamedTemporaryFile("wb", suffix=".txt", delete=False) as f:
        f.write("\n".join(cleaned).encode())
    try:
        cmd = ["java", "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines", "-lowerCase",
               f.name]
        proc = subprocess.run(cmd, capture_output=True, check=True)
    finally:
        os.unlink(f.name)
    lines = proc.stdout.decode().split("\n")
    if lines and len(lines) == len(captions) + 1 and lines[-1] == "":
        lines.pop()
    return [_drop_punctuation(line) for line in _check_lines(lines, captions)]


_TOKENIZERS: dict[str, Callable[[list[str]], list[str]]] = {"python": _python_tokenize, "java": _java_tokenize}
