"""Which language a text is in: by script, then, for Latin script, by function words and letters.

    detect_language("Quelles précisions gemvec propose-t-il ?")   # "fr"
    detect_language("Wie viele Punkte gab die Verteidigung ab?")   # "de"

Most scripts belong to one language here (Greek: el, Thai: th, Hangul: ko, ...); Han text is
Japanese when it has kana, else Chinese; Arabic and Cyrillic script are told apart by letters
only some of their languages use. Latin-script text is scored per language by the function
words it contains (each word weighted by 1 / how many languages share it, so "de" counts little
and "the" a lot) plus letters peculiar to a language (ß, ñ, ă, ğ, ł, ơ, ...). Questions of a few
words are enough: the lists include each language's question words.

This is a light heuristic, not a trained model: it knows the languages in :data:`LATIN_WORDS`
and the scripts in :data:`_SCRIPTS`, and says ``None`` when it cannot tell (no letters, a tie,
or Latin text with no known function word). tests/test_rag_grounding.py measures it on FLORES
sentences and XQuAD questions.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import cache

LANGUAGE_NAMES = {
    "am": "Amharic",
    "ar": "Arabic",
    "bg": "Bulgarian",
    "bn": "Bengali",
    "de": "German",
    "el": "Greek",
    "en": "English",
    "es": "Spanish",
    "fa": "Persian",
    "fi": "Finnish",
    "fr": "French",
    "he": "Hebrew",
    "hi": "Hindi",
    "hy": "Armenian",
    "id": "Indonesian",
    "it": "Italian",
    "ja": "Japanese",
    "ka": "Georgian",
    "km": "Khmer",
    "ko": "Korean",
    "nl": "Dutch",
    "pl": "Polish",
    "pt": "Portuguese",
    "ro": "Romanian",
    "ru": "Russian",
    "sw": "Swahili",
    "ta": "Tamil",
    "te": "Telugu",
    "th": "Thai",
    "tr": "Turkish",
    "uk": "Ukrainian",
    "ur": "Urdu",
    "vi": "Vietnamese",
    "yo": "Yoruba",
    "zh": "Chinese",
}

# (first, last code point, script); scripts of one language map straight to it below.
_SCRIPTS = (
    (0x0041, 0x024F, "latin"),
    (0x1E00, 0x1EFF, "latin"),  # Latin Extended Additional: Vietnamese, Yoruba letters
    (0x0370, 0x03FF, "el"),
    (0x1F00, 0x1FFF, "el"),
    (0x0400, 0x052F, "cyrillic"),
    (0x0530, 0x058F, "hy"),
    (0x0590, 0x05FF, "he"),
    (0x0600, 0x06FF, "arabic"),
    (0x0750, 0x077F, "arabic"),
    (0xFB50, 0xFDFF, "arabic"),
    (0xFE70, 0xFEFF, "arabic"),
    (0x0900, 0x097F, "hi"),
    (0x0980, 0x09FF, "bn"),
    (0x0B80, 0x0BFF, "ta"),
    (0x0C00, 0x0C7F, "te"),
    (0x0E00, 0x0E7F, "th"),
    (0x10A0, 0x10FF, "ka"),
    (0x1200, 0x139F, "am"),
    (0x1780, 0x17FF, "km"),
    (0x3040, 0x30FF, "kana"),
    (0x31F0, 0x31FF, "kana"),
    (0xFF66, 0xFF9F, "kana"),
    (0x3400, 0x4DBF, "han"),
    (0x4E00, 0x9FFF, "han"),
    (0xF900, 0xFAFF, "han"),
    (0x1100, 0x11FF, "ko"),
    (0x3130, 0x318F, "ko"),
    (0xAC00, 0xD7AF, "ko"),
)
# One CJK character carries about as much as a word of letters.
_SCRIPT_WEIGHT = {"han": 3, "kana": 3, "ko": 2}

# Function words and question words of each Latin-script language, lower case.
LATIN_WORDS: dict[str, str] = {
    "en": "the a of and to in is was that for on with as by at from it an be are this which or his her "
    "their have has had not but what who whom whose when where why how does did do can will would were "
    "been its they he she we you there than also into about more most other some such only these those "
    "all any if so no many much after before during between",
    "de": "der die das und ist nicht ein eine einer eines einem einen zu den dem des von mit sich auf für "
    "im auch es wie wer wen wem wessen was wann wo woher wohin warum welche welcher welches welchen "
    "wurde wurden werden hat haben hatte sind war waren bei nach aus als oder aber noch nur über dass "
    "diese dieser dieses durch um vom zum zur am kann viele gibt ich sie er wir ihr sein seine ihre "
    "welchem worüber worauf wovon womit wofür wozu woran wodurch wieso weshalb "
    "oft statt einige jahr",
    "fr": "le la les de des du un une et est en que qui dans pour par sur pas ne au aux avec ce cette ces "
    "il elle ils elles sont été être a ont plus ou mais se sa son ses leur leurs quel quelle quels "
    "quelles quand comment pourquoi où combien quoi était fut lors l d qu c n s j y entre selon",
    "es": "el la los las de del y en que es un una por con para se su sus al lo como más pero fue son "
    "está están ha han qué quién quiénes cuándo dónde cuál cuáles cómo cuánto cuántos cuántas porque "
    "era eran también sobre entre hasta desde cuando muy sin ser fueron según le",
    "pt": "o a os as de do da dos das e em no na nos nas que é um uma por com para se seu sua foi são "
    "como mais mas não ao à qual quais quando onde quem quanto quantos quantas porque pelo pela pelos "
    "ou também era eram foram sobre entre até desde ser tem ter",
    "it": "il lo la i gli le di del della dei delle degli e è in che un una per con si non da al alla "
    "sono come più ma anche fu chi cosa quando dove quale quali quanto quanti quante perché nel nella "
    "ha hanno essere era erano stato stata tra fra dal dalla sul sulla questo questa",
    "nl": "de het een en van in is dat op te zijn met voor niet aan er die om ook als bij of door naar "
    "wat wie wanneer waar hoe welke welk werd worden heeft hebben was waren maar nog uit over dan "
    "deze dit zich hun haar zijn",
    "ro": "și în de la a al ale cu pe din care este sunt un o nu se mai ce cine când unde cum câți câte "
    "pentru fost au fi lui ei sau dar ca acest această fiind după între despre prin iar "
    "s anul ani unele",
    "tr": "ve bir bu da de ile için olarak olan ne kim kimin nerede nereye nasıl neden niçin hangi kaç "
    "mı mi mu mü ise gibi daha çok en kadar sonra önce değil var yok tarafından olduğu ilk yılında "
    "nedir neydi neyi nereden kimdir kimi kime hangisi kaçı niye "
    "midir mıdır mudur müdür",
    "vi": "của và là có được trong cho những các một người không với này đã khi từ để ai gì nào đâu bao "
    "nhiêu tại sao như thế năm đến về cũng vào theo",
    "pl": "i w na z się nie do to że jest jak o co kto kogo gdzie kiedy dlaczego który która które "
    "którzy ile przez od po dla czy są był była było były ale jego ich jej oraz tak także",
    "id": "yang dan di ke dari ini itu untuk dengan adalah tidak dalam pada akan oleh apa siapa kapan "
    "dimana mana bagaimana mengapa berapa juga atau sebagai telah bisa dapat lebih tersebut dia mereka "
    "ada karena sangat saat setelah hanya seperti banyak orang",
    "sw": "na ya wa kwa ni za katika la cha kuwa hii hiyo yake lakini pia au nani nini wapi lini gani "
    "ngapi kwamba zaidi watu",
    "fi": "ja on ei se että oli ovat joka jotka mikä mitä kuka missä milloin miksi miten kuinka tai "
    "mutta myös kun niin hän sen ole olla voi kuin tämä nämä jo vain sekä jossa mukaan olivat hänen",
    "yo": "ni ti àti kí ó wọ́n náà sí fún pé jẹ́ ń kò ṣe ní tí láti àwọn wọn",
}

# Letters that, within Latin script, belong to (nearly) one of the languages above.
LATIN_LETTERS: dict[str, str] = {
    "de": "ßäöü",
    "fr": "çèêëîïœù",
    "es": "ñ¿¡",
    "pt": "ãõç",
    "it": "ìò",
    "ro": "ăâîșşțţ",
    "tr": "ğışçöü",
    "vi": "đơưạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹ",
    "pl": "łąęśźżńó",
    "fi": "äö",
    "yo": "ẹọṣ",
}
LETTER_WEIGHT = 0.5  # per occurrence, so one accented letter weighs about half a function word
# Letter groups frequent in one language's spelling and rare in the others'.
LATIN_GROUPS: dict[str, tuple[str, ...]] = {
    "en": ("th", "wh", "ing", "ght"),
    "de": ("ung", "tz", "sch", "eit"),
    "nl": ("ij", "oe", "aa", "uu"),
    "fr": ("eau", "oux", "aux", "ou"),
    "es": ("ción", "ll"),
    "pt": ("ção", "ões", "nh", "lh"),
    "it": ("gli", "zz", "cch", "zione"),
    "ro": ("ului", "ilor", "ție", "ști"),
    "tr": ("lar", "ler", "dir", "dır", "nın", "nin"),
    "pl": ("rz", "cz", "sz", "prz"),
    "fi": ("ää", "ttä", "ssa", "ssä", "llä", "nen"),
    "id": ("nya", "kan", "meng", "ber"),
    "sw": ("mw", "wa", "ku"),
}
GROUP_WEIGHT = 0.2
MIN_SCORE_PER_WORD = 0.1  # prose scores far more per word than that
MIN_SPELLING_SCORE = 1.0  # to decide from letters and letter groups alone, without a function word
NON_LATIN_SHARE = 0.3  # names and terms in Latin letters are common inside other scripts' text

_WORD = re.compile(r"[^\W\d_]+")  # runs of letters: "l'homme" gives "l", "homme"


def _script_of(char: str) -> str | None:
    code = ord(char)
    for first, last, script in _SCRIPTS:
        if first <= code <= last:
            return script if char.isalpha() or script in ("th", "hi", "bn", "ta", "te") else None
    return None


@cache
def _word_weights() -> dict[str, dict[str, float]]:
    """word -> {language: weight}, weight 1 / (languages listing the word)."""
    langs_of: dict[str, list[str]] = {}
    for lang, words in LATIN_WORDS.items():
        for word in set(words.split()):
            langs_of.setdefault(word, []).append(lang)
    return {word: {lang: 1.0 / len(langs) for lang in langs} for word, langs in langs_of.items()}


def function_words() -> frozenset[str]:
    """Every language's function words, for callers that want the content words of any text."""
    return frozenset(_word_weights())


def _latin_language(text: str) -> str | None:
    weights = _word_weights()
    lowered = text.lower()
    words: Counter[str] = Counter()
    found = _WORD.findall(lowered)
    for word in found:
        for lang, weight in weights.get(word, {}).items():
            words[lang] += weight
    spelling: Counter[str] = Counter()
    for lang, letters in LATIN_LETTERS.items():
        spelling[lang] += LETTER_WEIGHT * sum(lowered.count(letter) for letter in letters)
    for lang, groups in LATIN_GROUPS.items():
        spelling[lang] += GROUP_WEIGHT * sum(lowered.count(group) for group in groups)
    if not words and max(spelling.values()) < MIN_SPELLING_SCORE:
        return None  # a few names or code words are too weak a sign
    scores = words + spelling
    (best, top), *rest = [*scores.most_common(2), ("", 0.0)]
    if top < MIN_SCORE_PER_WORD * len(found):
        return None  # names, numbers or code with a stray "per" or "a": not prose
    return best if top > rest[0][1] else None


def _arabic_language(text: str) -> str:
    if any(char in text for char in "ےٹڈڑںھ"):
        return "ur"
    if any(char in text for char in "پچژگ") and "ة" not in text:
        return "fa"
    return "ar"


def _cyrillic_language(text: str) -> str:
    if any(char in text for char in "іїєґІЇЄҐ"):
        return "uk"
    if text.count("ъ") >= 2 and not any(char in text for char in "ыэЫЭ"):  # Russian has a few ъ
        return "bg"
    return "ru"


def detect_language(text: str) -> str | None:
    """The ISO 639-1 code of ``text``'s language, or None when it cannot tell (see the module doc)."""
    counts: Counter[str] = Counter()
    for char in text:
        script = _script_of(char)
        if script:
            counts[script] += _SCRIPT_WEIGHT.get(script, 1)
    if not counts:
        return None
    script = counts.most_common(1)[0][0]
    if script == "latin":
        others = [(n, s) for s, n in counts.items() if s != "latin"]
        if others and max(others)[0] >= NON_LATIN_SHARE * sum(counts.values()):
            script = max(others)[1]
    if script in ("han", "kana"):
        return "ja" if counts["kana"] else "zh"
    if script == "latin":
        return _latin_language(text)
    if script == "arabic":
        return _arabic_language(text)
    if script == "cyrillic":
        return _cyrillic_language(text)
    return script


def language_name(code: str | None) -> str | None:
    """The English name of a language code from :func:`detect_language` (None for None)."""
    return None if code is None else LANGUAGE_NAMES.get(code, code)
