"""Korean text helpers for templates: particles chosen by the final consonant, KRW amounts, dates, bytes.

A particle pair such as 은/는 takes its first form after a word whose last syllable
ends in a consonant (받침) and its second form after a vowel; 으로/로 also takes
로 after ㄹ.  Numbers are read the Korean way (1 일, 10 십, 3 삼 ...) and Latin
letters by their Korean names (L 엘, M 엠 ...), so ``"3"|을를`` is ``"3을"``.
"""

from __future__ import annotations

from datetime import date, datetime

__all__ = ["PARTICLES", "cp949_length", "format_date", "krw", "outside_ks_x_1001", "particle", "with_particle"]

#: the particle pairs the template filters know: (after a consonant, after a vowel)
PARTICLES: dict[str, tuple[str, str]] = {
    "은/는": ("은", "는"),
    "이/가": ("이", "가"),
    "을/를": ("을", "를"),
    "과/와": ("과", "와"),
    "으로/로": ("으로", "로"),
    "이에요/예요": ("이에요", "예요"),
    "아/야": ("아", "야"),
    "이랑/랑": ("이랑", "랑"),
}
_ALIASES = {pair.replace("/", ""): pair for pair in PARTICLES} | {
    f"{b}/{a}": f"{a}/{b}" for a, b in PARTICLES.values()
}

_CLOSERS = ")]}>'\".!?,~\u201d\u2019\u300d\u300f"  # brackets, quotes (incl. curly and Korean) and stops
_HANGUL_FIRST, _HANGUL_LAST = 0xAC00, 0xD7A3
_RIEUL = 8  # index of ㄹ among the final consonants
# final consonant index (0: none) of each digit's Korean reading: 영 일 이 삼 사 오 육 칠 팔 구
_DIGIT_FINAL = (21, 8, 0, 16, 0, 0, 1, 8, 8, 0)
# 십 백 천 만: the reading of a number ending in 1, 2, 3, 4 zeros (and 억 for 8, 조 for 12)
_ZEROS_FINAL = {1: 17, 2: 1, 3: 4, 4: 4, 8: 1, 12: 0}
# Korean names of Latin letters: the final consonant index of each
_LETTER_FINAL = {
    "l": 8, "m": 16, "n": 4, "r": 8,  # 엘 엠 엔 알
}


def _final(word: str) -> int | None:
    """The final consonant index of the word's last readable sound (0 for a vowel), or None if unknown."""
    text = word.rstrip()
    while text and text[-1] in _CLOSERS:
        text = text[:-1].rstrip()
    if text.endswith(("(", "[")):
        return None
    if not text:
        return None
    last = text[-1]
    if _HANGUL_FIRST <= ord(last) <= _HANGUL_LAST:
        return (ord(last) - _HANGUL_FIRST) % 28
    if last.isdigit():
        digits = text[len(text.rstrip("0123456789")):]
        stripped = digits.rstrip("0")
        zeros = len(digits) - len(stripped)
        if not stripped:
            return _DIGIT_FINAL[0]
        if zeros == 0:
            return _DIGIT_FINAL[int(stripped[-1])]
        for n in (12, 8, 4, 3, 2, 1):
            if zeros >= n:
                return _ZEROS_FINAL[n]
    if last.isascii() and last.isalpha():
        return _LETTER_FINAL.get(last.lower(), 0)
    return None


def particle(word: object, pair: str) -> str:
    """The form of ``pair`` (e.g. ``"은/는"`` or ``"은는"``) that follows ``word``.

    When the word's last sound cannot be read (an emoji, a symbol), both forms are
    given the way Korean writing does: ``은(는)``.
    """
    key = _ALIASES.get(pair, pair)
    if key not in PARTICLES:
        known = ", ".join(PARTICLES)
        raise ValueError(f"unknown particle pair {pair!r}; use one of {known}")
    after_consonant, after_vowel = PARTICLES[key]
    final = _final(str(word))
    if final is None:
        return f"{after_consonant}({after_vowel})"
    if key == "으로/로":
        return after_vowel if final in (0, _RIEUL) else after_consonant
    return after_consonant if final else after_vowel


def with_particle(word: object, pair: str) -> str:
    """``word`` followed by the right particle: ``with_particle("철수", "은/는") == "철수는"``."""
    return f"{word}{particle(word, pair)}"


def krw(amount: object, *, unit: str = "원") -> str:
    """``12300`` -> ``"12,300원"`` (integers; fractions of a won are rounded half to even)."""
    if isinstance(amount, bool) or not isinstance(amount, int | float):
        try:
            amount = float(str(amount))
        except ValueError:
            raise ValueError(f"krw needs a number of won; got {amount!r}") from None
    return f"{round(amount):,}{unit}"


def format_date(value: object, style: str = "long") -> str:
    """A date the Korean way: ``long`` 2026년 11월 25일, ``short`` 11월 25일, ``weekday`` 11월 25일(수),
    ``time`` 11월 25일 14:30; a strftime pattern (containing ``%``) is used as given."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"date needs a date, a datetime or an ISO text; got {value!r}") from None
    if not isinstance(value, date):
        raise ValueError(f"date needs a date, a datetime or an ISO text; got {value!r}")
    if "%" in style:
        return value.strftime(style)
    day = f"{value.month}월 {value.day}일"
    if style == "long":
        return f"{value.year}년 {day}"
    if style == "short":
        return day
    if style == "weekday":
        return f"{day}({'월화수목금토일'[value.weekday()]})"
    if style == "time":
        if not isinstance(value, datetime):
            raise ValueError("date style 'time' needs a datetime, not a date")
        return f"{day} {value.hour:02d}:{value.minute:02d}"
    raise ValueError(f"unknown date style {style!r}; use long, short, weekday, time or a strftime pattern")


def cp949_length(text: str) -> int:
    """The text's length in CP949 bytes, as Korean carriers count SMS/LMS (raises if it cannot be encoded)."""
    try:
        return len(text.encode("cp949"))
    except UnicodeEncodeError as error:
        bad = text[error.start:error.end]
        raise ValueError(
            f"{bad!r} (U+{ord(bad[0]):04X}) cannot be sent by SMS: it has no CP949 encoding; "
            "remove it or use a plain-text equivalent (e.g. 원 for ₩, no emoji)"
        ) from None


def outside_ks_x_1001(text: str) -> list[str]:
    """The characters of ``text`` that CP949 encodes but KS X 1001 (EUC-KR's 2,350 precomposed syllables and its
    symbols) lacks, each once: ``똠``, ``뷁``.  K12 counts them (2 bytes each), but carriers that read strict EUC-KR
    may garble them, and Solapi refuses them (error 1029: "EUC-KR(완성형 한글) 범위 안에 있는 문자만")."""
    out: list[str] = []
    for char in dict.fromkeys(text):
        if ord(char) < 0x80:
            continue
        try:
            strict = len(char.encode("euc-kr")) == 2  # CPython spells a syllable outside KS X 1001 in 8 bytes
            char.encode("cp949")
        except UnicodeEncodeError:
            continue  # not sendable at all: cp949_length says so
        if not strict:
            out.append(char)
    return out
