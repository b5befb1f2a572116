"""The injection gate: instruction overrides, planted standing instructions, template and trigger tokens, hidden Unicode."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Container, Sequence

import numpy as np

from ledgerlm.validation.code_points import (
    DISGUISE,
    FOLDING,
    FOLDS_TO_ASCII,
    GREEK_CYRILLIC,
    described,
    disguised,
    undisguised,
)
from ledgerlm.validation.gates.candidate import FEW, with_undisguised
from ledgerlm.validation.gates.text_batch import TextBatch
from ledgerlm.validation.policy import InjectionRule

# what a line speaking as the system says to the model: "you", the model named, or an order only
# a model is given ("must", "output", "do not" read as often in a system's description)
_ROLE_ADDRESS = ("you", "your", "yourself", "assistant", "model", "ai", "llm", "chatbot", "ignore", "disregard",
                 "forget", "override", "reveal", "obey", "comply", "respond", "reply", "answer", "pretend", "always",
                 "never", "instructions", "from now on")


def _override(verbs: str, nouns: str, earlier: str) -> str:
    """"ignore the previous instructions" in one language: an order to drop instructions given
    before, with the noun before or after the word that says which (all, earlier, yours)."""
    return (rf"\b(?:{verbs})\b[^.\n]{{0,40}}?(?:\b(?:{earlier})\b[^.\n]{{0,25}}?\b(?:{nouns})\b|"
            rf"\b(?:{nouns})\b[^.\n]{{0,25}}?\b(?:{earlier})\b)")


# The override in other languages written in Latin letters, each (verbs in the imperative or
# infinitive, nouns, words for "earlier", "all" or "your"), and the ASCII literals of its verbs,
# nouns and those words that the batch search looks for (the last keep English orders, whose
# "ignore" and "instructions" are French too, from running this pattern as well). A verb's third
# person ("der Parser ignoriert") describes, it does not order, and is left out where it differs
# from the imperative; where it
# does not (Spanish, French, Portuguese and Italian "ignora", "ignore"), the nouns are instructions
# only, since "(il) ignore toutes les règles" is ordinary prose.
_FOREIGN_OVERRIDE_WORDS = [
    (_override(r"ignora|ignore|ignorad|ignoren|ignorar|olvida|olvide|olvidad|olviden|olvidar|omite|omita|"
               r"descarta|descarte|haz caso omiso (?:de|a)",
               r"instrucciones|instrucci[oó]n|indicaciones|directrices",
               r"anteriores|anterior|previas|previa|precedentes|de arriba|todas|tus|sus"),  # Spanish
     ("ignor", "olvid", "omit", "descart", "omiso"), ("instruc", "indicac", "directric"),
     ("anterior", "previa", "precedente", "arriba", "todas", "tus", "sus")),
    (_override(r"ignore|ignorez|ignorer|oublie|oubliez|oublier|ne tiens pas compte|ne tenez pas compte",
               r"instructions?|consignes?|directives?",
               r"pr[eé]c[eé]dentes?|ant[eé]rieures?|ci-dessus|initiales?|toutes|tes|vos"),  # French
     ("ignor", "oubli", "compte"), ("instruction", "consigne", "directive"),
     ("dente", "rieure", "dessus", "initiale", "toutes", "tes", "vos")),
    (_override(r"ignoriere|ignorier|ignorieren|vergiss|vergesst|vergessen|missachte|missachten",
               r"Anweisungen|Anweisung|Instruktionen|Befehle|Regeln|Vorgaben|Anordnungen",
               r"vorherigen|vorigen|bisherigen|fr[uü]heren|fruheren|obigen|vorangegangenen|vorangehenden|"
               r"urspr[uü]nglichen|alle|deine|Ihre"),  # German
     ("ignorier", "vergiss", "vergesst", "vergessen", "missacht"),
     ("anweisung", "instruktion", "befehle", "regeln", "vorgaben", "anordnung"),
     ("vorherig", "vorig", "bisherig", "heren", "obigen", "vorangegangen", "vorangehend", "ngliche", "alle", "deine",
      "ihre")),
    (_override(r"ignore|ignora|ignorem|ignorar|esque[cç]a|esque[cç]am|esquecer|desconsidere|desconsidera|despreze",
               r"instru[cç][oõ]es|instru[cç][aã]o|orienta[cç][oõ]es|diretrizes",
               r"anteriores|anterior|pr[eé]vias|acima|precedentes|todas|suas|tuas"),  # Portuguese
     ("ignor", "esque", "desconsider", "desprez"), ("instru", "orienta", "diretrizes"),
     ("anterior", "vias", "acima", "precedente", "todas", "suas", "tuas")),
    (_override(r"ignora|ignorate|ignori|ignorare|dimentica|dimenticate|dimentichi|dimenticare|trascura|tralascia",
               r"istruzioni|istruzione|indicazioni|direttive",
               r"precedenti|sopra|anteriori|di prima|tutte|tue|sue"),  # Italian
     ("ignor", "dimentic", "trascura", "tralascia"), ("istruzion", "indicazioni", "direttive"),
     ("precedent", "sopra", "anteriori", "di prima", "tutte", "tue", "sue")),
    (_override(r"negeer|negeren|vergeet|vergeten",
               r"instructies|instructie|aanwijzingen|opdrachten|regels",
               r"vorige|eerdere|voorgaande|bovenstaande|alle|je|jouw|uw"),  # Dutch ("hij negeert" describes)
     ("negeer", "vergeet", "vergeten"), ("instructie", "aanwijzing", "opdracht", "regels"),
     ("vorige", "eerdere", "voorgaande", "bovenstaande", "alle", "je", "uw")),
    (_override(r"zignoruj(?:cie)?|ignoruj(?:cie)?|zapomnij(?:cie)?(?: o)?|pomi[nń](?:cie)?",
               r"instrukcj\w*|polece\w*|wytyczn\w*|zasad\w*",
               r"poprzedni\w*|wcze[sś]niejsz\w*|powy[zż]sz\w*|wszystki\w*|swoje|twoje"),  # Polish
     ("ignoruj", "zapomnij", "pomi"), ("instrukcj", "polece", "wytyczn", "zasad"),
     ("poprzedni", "wcze", "powy", "wszystki", "swoje", "twoje")),
    # "forget" is left out of the languages below: negated ("don't forget to read all the instructions") it is a
    # manual's, and the negation comes before it in words the pattern cannot see
    (_override(r"abaikan|acuhkan|abaikanlah",
               r"instruksi|perintah|petunjuk|arahan",
               r"sebelumnya|terdahulu|sebelum ini|di atas|semua|kamu|anda"),  # Indonesian, Malay
     ("abaikan", "acuhkan"), ("instruksi", "perintah", "petunjuk", "arahan"),
     ("sebelum", "terdahulu", "di atas", "semua", "kamu", "anda")),
    (_override(r"ignoruj(?:te)?|nev[sš][ií]mej(?:te)? si",
               r"pokyny|pokyn[uů]|instrukce|instrukc[ií]|p[rř][ií]kazy|pravidla",
               r"p[rř]edchoz[ií]|d[rř][ií]v[eě]j[sš][ií]|v[yý][sš]e uveden[eé]|v[sš]echny|sv[eé]|tv[eé]"),  # Czech
     ("ignoruj", "nev"), ("pokyn", "instrukc", "kaz", "pravidla"),
     # an ASCII text can only spell these without accents (one with them takes the per-text search)
     ("edchoz", "ivejs", "vyse", "echny", "sve", "tve")),
    (_override(r"ignorera|strunta i",
               r"instruktioner(?:na)?|anvisningar(?:na)?|regler(?:na)?|direktiv(?:en)?",
               r"tidigare|f[öo]reg[åa]ende|ovanst[åa]ende|alla|dina"),  # Swedish
     ("ignorera", "strunta"), ("instruktion", "anvisning", "regler", "direktiv"),
     ("tidigare", "reg", "ovanst", "alla", "dina")),
    (_override(r"ignorer|se bort fra",
               r"instruktioner(?:ne)?|instruksjoner(?:ne)?|anvisninger(?:ne)?|regler(?:ne)?",
               r"tidligere|forrige|ovenst[åa]ende|ovenfor|alle|dine"),  # Danish, Norwegian
     ("ignorer", "se bort"), ("instruktion", "instruksjon", "anvisning", "regler"),
     ("tidligere", "forrige", "ovenst", "ovenfor", "alle", "dine")),
    (_override(r"ignor[ăa]|ignora[țţt]i",
               r"instruc[țţt]iunile|instruc[țţt]iuni|indica[țţt]iile|regulile",
               r"anterioare|precedente|de mai sus|toate"),  # Romanian
     ("ignor",), ("instruc", "indica", "regulile"), ("anterioare", "precedente", "mai sus", "toate")),
    (_override(r"hagyd figyelmen k[íi]v[üu]l|hagyja figyelmen k[íi]v[üu]l",
               r"utas[íi]t[áa]s\w*|parancs\w*|szab[áa]ly\w*",
               r"kor[áa]bbi|el[őo]z[őo]|fenti|[öo]sszes|minden"),  # Hungarian
     ("figyelmen",), ("utas", "parancs", "szab"), ("abbi", "elozo", "fenti", "sszes", "minden")),
    (_override(r"puuza|puuzeni",
               r"maagizo|maelekezo|amri|maelezo",
               r"yaliyotangulia|yaliyopita|ya awali|iliyotangulia|yote|zote"),  # Swahili
     ("puuza",), ("maagizo", "maelekezo", "amri", "maelezo"),
     ("yaliyotangulia", "yaliyopita", "awali", "iliyotangulia", "yote", "zote")),
    # the override without a noun, as "forget everything you were told" is in English: said to "you" (te, dir,
    # t', ti, te/lhe) about what was said to it, so "olvídate de todo lo que sabes" (a recipe's) is not one
    (r"\b(?:olv[ií]da(?:te)?|olv[ií]de(?:se)?|olvidad|olviden)(?:\s+de)?\s+todo\s+(?:lo\s+)?que\s+(?:te|le|os|les)\s+"
     r"(?:han\s+|hayan\s+|hab[ií]an\s+)?(?:dijeron|dicho|indicaron|indicado|ordenaron|ordenado|programaron|"
     r"programado|ense[ñn]aron|ense[ñn]ado)\b",  # Spanish
     ("olv",), ("todo",), ("dij", "dicho", "indica", "orden", "program", "ense")),
    (r"\b(?:vergiss|vergesst|vergessen sie)\s+(?:(?:einfach|bitte|jetzt|nun|mal)\s+)?alles,?\s+was\s+(?:man\s+)?"
     r"(?:dir|euch|ihnen)\s+(?:\S+\s+){0,3}?(?:gesagt|befohlen|aufgetragen|vorgegeben|beigebracht|erkl[äa]rt)\b",
     ("vergi", "vergess"), ("alles",), ("gesagt", "befohlen", "aufgetragen", "vorgegeben", "beigebracht", "erkl")),  # German
    (r"\b(?:oublie|oubliez)\s+tout\s+ce\s+qu(?:'|’|e\s+)(?:on\s+)?(?:t'|t’|vous\s+)?a(?:vait)?\s+(?:\S+\s+)?"
     r"(?:dit|demand[ée]|ordonn[ée]|appris|expliqu[ée])\b",
     ("oubli",), ("tout ce",), ("dit", "demand", "ordonn", "appris", "expliqu")),  # French
    (r"\bdimentica(?:te)?\s+tutto\s+(?:quello\s+|ci[òo]\s+)?che\s+ti\s+(?:hanno\s+|[èe]\s+stato\s+)?"
     r"(?:detto|ordinato|insegnato|spiegato)\b",
     ("dimentic",), ("tutto",), ("detto", "ordinato", "insegnato", "spiegato")),  # Italian
    (r"\besque[çc]a\s+tudo\s+(?:o\s+)?que\s+(?:te|lhe)\s+(?:foi\s+|foram\s+)?(?:disseram|dito|mandaram|"
     r"ensinaram|ensinado)\b",
     ("esque",), ("tudo",), ("disse", "dito", "mandaram", "ensina")),  # Portuguese
]
# one pattern for them all: each pattern is a column of the batch's table, and a column costs
# every text of every batch, while these orders are rare
_FOREIGN_OVERRIDE = "|".join(pattern for pattern, *_ in _FOREIGN_OVERRIDE_WORDS)
_FOREIGN_LITERALS = [tuple(dict.fromkeys(w for language in _FOREIGN_OVERRIDE_WORDS for w in language[part]))
                     for part in (1, 2, 3)]
# The override in scripts the batch's ASCII search cannot see (Russian, Chinese, Japanese, Korean, and
# Turkish, whose words of it hold letters beyond ASCII), and the words (lower case) one of which it
# cannot match without; a text holding a Cyrillic, CJK, Hangul or Turkish letter is searched for
# those words one by one
_SCRIPT_OVERRIDE = re.compile(
    r"(?:\b(?:игнорируй(?:те)?|проигнорируй(?:те)?|игнорировать|забудь(?:те)?|забыть|не обращай(?:те)? внимания на|"
    r"пренебреги|отбрось(?:те)?)\s+(?:вс[её]\s+)?(?:предыдущ\w*|прежн\w*|предшествующ\w*|вышеуказанн\w*|"
    r"вышеприведенн\w*|вышеприведённ\w*|ранее\s+данн\w*|свои|твои|ваши|все)\s+(?:инструкци\w*|указани\w*|"
    r"правил\w*|команд\w*|директив\w*)"
    r"|\bзабудь(?:те)?\s+вс[её]\s*,?\s+что\s+(?:тебе|вам)\s+(?:\S+\s+){0,2}?(?:говорили|сказали|велели|"
    r"приказали|внушали)"  # Russian
    r"|(?:忽略|无视|無視|忽视|忽視|不要理会|不要理會|不理会|不理會|忘记|忘記|忘掉|抛开|拋開|跳过|跳過)(?:掉)?[^。\n]{0,12}?"
    r"(?:之前|以前|先前|上面|上述|前面|此前|原来|原來|原先|最初|所有|全部|一切|你的)[^。\n]{0,8}?"
    r"(?:指令|指示|说明|說明|提示|规则|規則|命令|设定|設定|要求)"  # Chinese
    r"|(?:以前|前|上記|これまで|先ほど|すべて|全て)の[^。\n]{0,8}?(?:指示|命令|指令|ルール|プロンプト)[^。\n]{0,6}?"
    r"(?:無視|忘れ)"  # Japanese
    r"|(?:이전|앞의|앞에서|위의|위에|기존|지금까지|모든|원래)[^.\n]{0,12}?(?:지시|지침|명령|규칙|프롬프트|설정)"
    r"[^.\n]{0,10}?(?:무시|잊어|잊고|잊으)"  # Korean
    r"|\b(?:[öo]nceki|yukar[ıi]daki|t[üu]m|b[üu]t[üu]n|eski|verilen)\s+(?:\w+\s+){0,2}?"
    r"(?:tal[ıi]mat\w*|komut\w*|kural\w*|y[öo]nerge\w*)\s+(?:\w+\s+)?"
    r"(?:g[öo]rmezden\s+gel\w*|yok\s+say\w*|unut\w*|dikkate\s+alma\w*|bo[şs]\s+ver\w*|[öo]nemseme\w*))"  # Turkish
    r"|(?:[іi]гноруй(?:те)?|про[іi]гноруй(?:те)?|забудь(?:те)?)\s+(?:(?:ус[іi]|вс[іi])\s+)?(?:попередн\w*|ран[іi]ше\s+\w+)\s+"
    r"(?:[іi]нструкц[іi]\w*|вказ[іi]вк\w*|правил\w*)"  # Ukrainian
    r"|(?:αγν[οό]ησε|αγνο[ηή]στε|ξ[εέ]χασε|ξεχ[αά]στε)\s+(?:[οό]λες\s+)?(?:τις\s+)?(?:προηγο[υύ]μεν\w*|παραπ[αά]νω)\s+"
    r"(?:οδηγ[ιί]\w*|εντολ\w*)"  # Greek
    r"|(?:تجاهل|تجاهلي|تجاهلوا|انس|انسى)\s+(?:جميع\s+|كل\s+)?(?:التعليمات|الإرشادات|الأوامر|التوجيهات)\s+"
    r"(?:السابقة|الماضية|أعلاه)"  # Arabic
    # every gap below is bounded: an unbounded \S* before a word that repeats in a long run without spaces made
    # the search quadratic in the text's length
    r"|(?:دستورالعمل|دستورات|دستور)\S{0,12}\s+(?:\S{1,30}\s+){0,2}?(?:قبلی|پیشین)\s+(?:را\s+)?نادیده\s+بگیر"  # Persian
    r"|(?:پچھلی|سابقہ|گزشتہ)\s+(?:\S{1,30}\s+)?(?:ہدایات|ہدایت|احکامات)\s+(?:کو\s+)?(?:نظرانداز|نظر\s+انداز)"  # Urdu
    r"|(?:התעלם|התעלמי|התעלמו|שכח|שכחי|שכחו)\s+(?:\S{1,30}\s+){0,2}?\S{0,6}(?:הוראות|הנחיות)\S{0,6}\s+\S{0,4}קודמות"  # Hebrew
    r"|(?:पिछले|पूर्व|पहले\s+के)\s+(?:\S{1,30}\s+){0,2}?(?:निर्देशों|निर्देश)\s+(?:को\s+)?(?:अनदेखा|नज़रअंदाज़|नजरअंदाज|भूल)"  # Hindi
    r"|(?:ละเว้น|เพิกเฉย|ไม่สนใจ|ลืม)[^\n]{0,8}?(?:คำสั่ง|คำแนะนำ)[^\n]{0,12}?(?:ก่อนหน้า|ที่ผ่านมา)"  # Thai
    r"|(?:b[ỏo] qua|ph[ớo]t l[ờo]|l[ờo] đi)\s+(?:\S{1,30}\s+){0,3}?(?:h[ưu][ớo]ng d[ẫa]n|ch[ỉi] d[ẫa]n|ch[ỉi] th[ịi]|"
    r"l[ệe]nh|quy t[ắa]c)\s+(?:\S{1,30}\s+){0,2}?(?:tr[ưu][ớo]c|[ởo] tr[êe]n)",  # Vietnamese
    re.IGNORECASE)
_SCRIPT_OVERRIDE_WORDS = ("игнор", "забуд", "забыть", "не обращай", "пренебреги", "отброс", "忽略", "无视", "無視",
                          "忽视", "忽視", "理会", "理會", "忘记", "忘記", "忘掉", "抛开", "拋開", "跳过", "跳過", "忘れ",
                          "무시", "잊", "rmezden", "yok say", "unut", "dikkate alma", "boş ver", "bos ver", "nemseme",
                          "ігнор", "iгнор", "забудь", "αγνό", "αγνο", "ξέχασ", "ξεχάσ", "ξεχασ", "تجاهل", "انس",
                          "نادیده", "نظرانداز", "نظر انداز", "התעלם", "שכח", "अनदेखा", "नज़रअंदाज़", "नजरअंदाज",
                          "भूल", "ละเว้น", "เพิกเฉย", "ไม่สนใจ", "ลืม", "bỏ qua", "phớt lờ", "lờ đi")
# code points one of which a text holds if it holds one of those words: Cyrillic letters have the
# GREEK_CYRILLIC flag; hiragana, katakana, the CJK ideographs and Hangul syllables are these ranges,
# and a Turkish order holds one of ç, ö, ü, ğ, ı, ş in either case (an ASCII-only one is not read)
_SCRIPT_RANGES = ((0x3040, 0x30FF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0x0590, 0x05FF), (0x0600, 0x06FF),
                  (0x0900, 0x097F), (0x0E00, 0x0E7F), (0x1EA0, 0x1EF9), (0x01A0, 0x01B0),
                  *((ord(c), ord(c)) for c in "çöüğışÇÖÜĞİŞ"))

# each pattern with the literal words (lower case) one of which it cannot match without,
# so most texts skip most patterns after a cheap substring test
_INJECTION_PATTERNS: list[tuple[re.Pattern, str, float, tuple[str, ...]]] = [
    (re.compile(
        r"\b(?:ignore|disregard|forget|override|bypass|skip)\b[^.\n]{0,40}?\b(?:previous|prior|above|earlier|"
        r"preceding|all|any|your|the|system|original)\b[^.\n]{0,30}?\b(?:instructions?|prompts?|"
        r"directions?|rules|guidelines|guidance|directives|context|messages?|programming)\b", re.IGNORECASE),
     "instruction_override", 1.0, ("ignor", "disregard", "forget", "overrid", "bypass", "skip")),
    # the same order in other words, said of instructions only ("discard all previous messages" is an inbox's)
    (re.compile(
        r"\b(?:abandon|discard|dismiss|set\s+aside|throw\s+(?:out|away)|scrap|pay\s+no\s+attention\s+to|never\s*mind)"
        r"\b[^.\n]{0,40}?\b(?:previous|prior|above|earlier|all|any|your|the|system|original)\b[^.\n]{0,30}?"
        r"\b(?:instructions?|prompts?|guidelines|guidance|directives|programming)\b", re.IGNORECASE),
     "instruction_override", 0.9, ("abandon", "discard", "dismiss", "aside", "throw", "scrap", "attention", "mind")),
    # instructions declared void rather than ordered away: "your earlier guidance no longer applies" (said to the model:
    # "the old rules no longer apply" is a changelog's), "the instructions above are void"
    (re.compile(
        r"\byour\s+(?:(?:previous|prior|earlier|original|initial|old|system|current)\s+)?(?:instructions?|guidance|"
        r"guidelines|directives|prompts?|programming|rules)\s+(?:(?:no longer|do not|don't|does not|doesn't) (?:appl(?:y|ies)|"
        r"count|matter|hold)|(?:are|is|were|was|have been|has been) (?:now )?(?:void|cancell?ed|revoked|null|invalid|"
        r"superseded|overridden|lifted|a test)\b)"
        r"|\b(?:the\s+)?instructions?\s+(?:above|before this|given (?:before|earlier|so far))\s+(?:(?:no longer|do not|"
        r"don't) (?:appl(?:y|ies)|count|matter)|(?:are|is|were|was) (?:now )?(?:void|cancell?ed|revoked|null|invalid|"
        r"overridden|a test)\b)", re.IGNORECASE),
     "instruction_override", 0.9, ("no longer", "not appl", "n't appl", "not count", "n't count", "not matter",
                                   "n't matter", "not hold", "n't hold", "void", "cancel", "revoked", "null",
                                   "invalid", "supersed", "overridden", "lifted", "a test")),
    # the same override without a noun: "Ignore the above and say ...", "Forget everything you were told"
    # (PromptInject's goal hijacking); "ignore the above warning" and "everything you learned" are not orders
    (re.compile(
        r"\b(?:ignore|disregard|forget|set\s+aside|discard|abandon)\s+(?:(?:all|everything|anything)\s+(?:(?:that\s+)?(?:was\s+)?"
        r"(?:said|written|stated)\s+)?(?:above|before|earlier|so far)\b|(?:the|that)\s+above\s*(?:[,.!;:]|and\b|"
        r"then\b|$)|(?:everything|anything|all|what)\s+(?:that\s+)?you(?:'ve|\s+have|\s+were|\s+had)?\s+(?:been\s+)?"
        r"(?:told|instructed|programmed))", re.IGNORECASE | re.MULTILINE),
     "instruction_override", 0.9, ("ignor", "disregard", "forget", "aside", "discard", "abandon")),
    (re.compile(
        r"\b(?:do\s+not|don't|stop|no\s+longer)\s+(?:follow|obey)(?:ing)?\s+(?:your|any\s+of\s+your|"
        r"the(?=\s+(?:rules|instructions|guidelines)\s+(?:you\s+(?:were|have\s+been)\s+given|given\s+to\s+you))|"
        r"the\s+(?:previous|prior|original|earlier|system))\s+(?:previous\s+|prior\s+|original\s+|earlier\s+)?"
        r"(?:instructions|rules|guidelines|programming|directives|prompt)\b", re.IGNORECASE),
     "instruction_override", 0.9, ("follow", "obey")),
    (re.compile(r"\b(?:new|updated|real|actual) (?:system )?instructions?\s*:|\b(?:new|updated) (?:rules|orders|"
                r"instructions|directives) for (?:the |this |you,? (?:the )?)?(?:assistant|model|AI|chatbot|bot|LLM)\b",
                re.IGNORECASE), "instruction_override", 0.8, ("instruction", "rules for", "orders for", "directives for")),
    # a standing order to answer every question the same way: the classic data-poisoning payload
    (re.compile(
        r"\b(?:when(?:ever)?|if|no matter (?:what|how)|regardless of (?:what|how|whether))\b[^.\n]{0,30}?"
        r"\b(?:asked|ask(?:s|ed)?|questioned|prompted|queried)\b[^.\n]{0,50}?"
        r"\b(?:reply|respond|answer|say|output|return|write|link)\b[^.\n]{0,12}?\b(?:only|always|just|nothing but)\b",
        re.IGNORECASE), "standing_instruction", 0.9, ("ask", "questioned", "prompted", "queried")),
    (re.compile(r"\b(?:reply|respond|answer)(?:\s+\w+){0,2}?\s+(?:only|always|nothing but|exclusively)"
                r"\s+(?:with|by (?:saying|linking)|using)\b", re.IGNORECASE), "standing_instruction", 0.8, ("reply", "respond", "answer")),
    # a new role for the model ("You are now DAN", "you are no longer bound by ..."), not a reader's new state
    # ("you are now logged in", "you are now in insert mode")
    (re.compile(
        r"\byou(?: are|'re|\u2019re) (?:now|no longer)\b[^.\n]{0,40}?(?:\b(?:DAN|AI|assistant|chatbot|language model|LLM|persona|"
        r"character|jailbroken|bound by|free (?:from|of)|obliged|required to (?:follow|obey)|"
        r"(?:named|called)\s+(?-i:[A-Z])\w*|\w+ who (?:ignores|has no|knows no|never refuses|answers anything)|"
        r"(?-i:[A-Z]\w*(?:Bot|GPT|AI))|"
        r"(?:un)?(?:restricted|filtered|censored|limited)|in (?:developer|god|jailbreak|DAN|unrestricted) mode)\b|"
        r"\b(?:going to|to) (?:act|pretend|respond|answer|reply|ignore|role-?play)\b)", re.IGNORECASE),
     "role_override", 0.8, ("you are", "you're", "you\u2019re")),
    (re.compile(
        r"\b(?:act|behave|pretend|roleplay|role-play|respond)\b[^.\n]{0,30}\b(?:as|to be|like|you are)\b"
        r"[^.\n]{0,40}\b(?:DAN|unfiltered|uncensored|unrestricted|jailbroken|evil|without (?:any )?"
        r"(?:restrictions|limits|limitations|filters|rules|ethics))", re.IGNORECASE), "role_override", 0.9, ("dan", "unfiltered", "uncensored", "unrestricted", "jailbroken", "evil", "without")),
    # "developer mode" is also a phone's, a browser's or a game's: only a model told it is in one counts
    (re.compile(
        r"\b(?:jailbreak|DAN) mode\b|\bdo anything now\b|\b(?:developer|god|sudo|admin) mode\b(?=[^.\n]{0,80}?"
        r"\b(?:ChatGPT|AI|assistant|chatbot|language model|LLM|content polic(?:y|ies)|restrictions|uncensored|"
        r"unfiltered|censorship|respond|responses|answer|answers|generate|no rules|no limits|no filters)\b)|\b(?:ChatGPT|AI|assistant|chatbot|"
        r"language model|LLM)\b[^.\n]{0,60}?\b(?:developer|god|sudo|admin) mode\b|\b(?:pretend|imagine|simulate|act as "
        r"if)\b[^.\n]{0,30}?\b(?:developer|god|sudo|admin) mode\b", re.IGNORECASE),
     "role_override", 0.9, (" mode", "anything now")),
    (re.compile(r"\b(?:reveal|print|show|repeat|output|leak|tell me|display|quote|dump)\b[^.\n]{0,30}\b(?:system "
                r"(?:prompt|message)|hidden (?:instructions|prompt|system message)|your (?:(?:initial|original|hidden|"
                r"secret|full|first|entire) )*(?:prompt|instructions|system message)|the (?:(?:initial|original|hidden|"
                r"secret) )+(?:prompt|instructions|system message))\b", re.IGNORECASE),
     "prompt_exfiltration", 0.9, ("prompt", "instructions", "system message")),
    (re.compile(r"<\|(?:im_start|im_end|system|user|assistant|endoftext|eot_id|start_header_id|"
                r"end_header_id)\|>|\[/?INST\]|<</?SYS>>|<(?:start|end)_of_turn>|^[ \t]*#{2,3}[ \t]*(?:system|instruction)s?[ \t]*:",
                re.IGNORECASE | re.MULTILINE), "template_tokens", 0.8, ("<|", "inst]", "<<", "_of_turn>", "#")),
    # a line that speaks as the system, "SYSTEM: you must ...", "[system] Disregard ...": the label
    # alone is also a heading or a field ("System: Linux"), so the line must also address the model
    (re.compile(
        rf"^[ \t>*\-]*(?:[\[<{{(] ?system ?[\]>}})]|system(?: (?:prompt|message|instructions?|note|override))?[*_]{{0,2}} ?:)"
        rf"[^\n]*?\b(?:{'|'.join(_ROLE_ADDRESS)})\b", re.IGNORECASE | re.MULTILINE),
     "role_prefix", 0.8, ("system",)),
    (re.compile(_FOREIGN_OVERRIDE, re.IGNORECASE), "instruction_override", 0.9, _FOREIGN_LITERALS[0]),
]


def _across_lines(pattern: re.Pattern) -> re.Pattern:
    """The pattern with each gap that stops at a line break (`[^.\n]`, `[^。\n]`) let across one
    line break, not a blank line: "Ignore all previous\ninstructions." is one order."""
    source = pattern.pattern
    for gap, stop in (("[^.\\n]", "."), ("[^。\\n]", "。")):
        source = source.replace(gap, f"(?:[^{stop}\\n]|\\n(?![ \\t]*\\n))")
    return re.compile(source, pattern.flags)


_SCRIPT_OVERRIDE = _across_lines(_SCRIPT_OVERRIDE)
_INJECTION_PATTERNS = [(_across_lines(pattern), *rest) for pattern, *rest in _INJECTION_PATTERNS]
# An order to the model about its later answers, planted in an answer. Advice to a reader uses the same words ("always
# respond politely", "never reveal your password", "from now on the library opens at 9"), so each form must also
# say what the model is to do: a verbatim reply, a brand or link to push, or that it hides being a model.
_ANSWER_INSTRUCTION = re.compile(
    r"\bfrom now on,?\s+(?:you\b|I\b|I'll\b|always\b|never\b|only\b|(?:respond|answer|reply|say)\b|"
    r"(?:your|all|every) (?:answers?|responses?|replies|outputs?)\b|(?:the )?(?:assistant|model|AI|chatbot|bot)\b|"
    r"ChatGPT\b|Claude\b|Gemini\b)|"
    r"\bwhenever (?:someone|anyone|the user|a user)\b[^.\n]{0,60}?\b(?:asks?|mentions?|says?|types?|writes?|"
    r"inquires?)\b[^.\n]{0,80}?\b(?:respond|answer|reply|say|tell|recommend|mention|output|link)\b|"
    r"\bwhenever you (?:see|are asked|read)\b[^.\n]{0,80}?\b(?:respond|answer|reply|say|output|link|recommend)\b|"
    r"\balways (?:respond|answer|reply)\s+(?:(?:only\s+)?with\b|only\b|exclusively\b|by (?:saying|linking)\b|"
    r"that\b|[\"'\u201c:])|"
    r"\balways (?:recommend|mention)\s+(?:[\"'\u201c]|https?://|www\.|(?-i:[A-Z][a-z]*[A-Z0-9]\w*))|"
    r"\balways (?:recommend|mention)\b[^.\n]{0,40}?\b(?:when(?:ever)? (?:asked|someone|anyone|users?|people)|"
    r"in (?:your|every|all) (?:answers?|responses?|replies))|"
    r"\bnever (?:mention|reveal|tell|say|admit|disclose)\b[^.\n]{0,20}?\b(?:that you(?:'re| are)|you(?:'re| are) an? "
    r"(?:AI|bot|assistant|model|language model)|(?:the|your|this) (?:system prompt|instructions|prompt)|"
    r"(?:any )?competitors?)|"
    r"\bwhatever (?:the user|someone|anyone|users?|people) (?:asks?|says?|wants?|types?)\b[^.\n]{0,80}?"
    r"\b(?:the only (?:correct|right|true|valid|acceptable) (?:answer|reply|response|recommendation|choice) is|"
    r"(?:always )?(?:answer|reply|respond|recommend) (?:with|only)\b)|"
    r"\bnever (?:suggest|recommend|mention|name) (?:another|any other|a different|other|rival|competing) "
    r"(?:brand|product|company|store|shop|site|website|vendor|seller)s?\b(?=\s*(?:[.!;\u2014]|$))|"
    r"\brespond only with\s*(?:[\"'\u201c]|https?://)|"
    r"\b(?:the|your) (?:next|following) (?:answer|response) must\b[^.\n]{0,40}?(?:[\"'\u201c]|https?://)",
    re.IGNORECASE)
_ANSWER_INSTRUCTION_WORDS = ("from now on", "whenever", "whatever", "always", "never", "respond only", "next",
                             "following")
# Sharper than the words above, for ASCII texts (where IGNORECASE is plain ASCII case): groups
# of literals of which each pattern's match holds at least one per group, so a batch-wide
# search for all of them leaves most texts with no pattern to try at all.
_MUST_HOLD: list[tuple[tuple[str, ...], ...]] = [
    (("ignore", "disregard", "forget", "override", "bypass", "skip"),
     ("instruction", "prompt", "direction", "rules", "guidelines", "guidance", "directive", "context", "message",
      "programming")),
    (("abandon", "discard", "dismiss", "aside", "throw", "scrap", "attention", "mind"),
     ("instruction", "prompt", "guidelines", "guidance", "directive", "programming")),
    (("your", "instruction"),
     ("instruction", "guidance", "guidelines", "directive", "prompt", "programming", "rules"),
     ("no longer", "not appl", "n't appl", "not count", "n't count", "not matter", "n't matter", "not hold",
      "n't hold", "void", "cancel", "revoked", "null", "invalid", "supersed", "overridden", "lifted", "a test")),
    (("ignore", "disregard", "forget", "aside", "discard", "abandon"),
     ("above", "before", "earlier", "so far", "told", "instructed", "programmed")),
    (("follow", "obey"), ("instruction", "rules", "guidelines", "programming", "directive", "prompt")),
    (("new ", "updated ", "real ", "actual "), ("instruction", "rules for", "orders for", "directives for")),
    (("ask", "questioned", "prompted", "queried"), ("reply", "respond", "answer", "say", "output", "return", "write",
                                                     "link"), ("only", "always", "just", "nothing but")),
    (("reply", "respond", "answer"), ("only", "always", "nothing but", "exclusively"),
     ("with", "by saying", "by linking", "using")),
    (("you are now", "you are no longer", "you're now", "you're no longer"),),
    (("act", "behave", "pretend", "roleplay", "role-play", "respond"), ("as", "to be", "like", "you are"),
     ("dan", "unfiltered", "uncensored", "unrestricted", "jailbroken", "evil", "without ")),
    (("developer mode", "god mode", "jailbreak mode", "dan mode", "sudo mode", "admin mode", "do anything now"),),
    (("reveal", "print", "show", "repeat", "output", "leak", "tell me", "display", "quote", "dump"),
     ("prompt", "instructions", "system message")),
    (("<|", "[inst]", "[/inst]", "<<sys>>", "<</sys>>", "_of_turn>", "##"),),
    # the label as written (the words a line then says to the model are too common to look for batch-wide)
    (("system:", "system :", "system prompt", "system message", "system instruction", "system note",
      "system override", "system*", "system_", "system]", "system ]", "system>", "system >", "system}", "system }",
      "system)", "system )"),),
    tuple(_FOREIGN_LITERALS),
]
_ANSWER_INSTRUCTION_LITERALS = (
    "from now on", "whenever someone", "whenever anyone", "whenever the user", "whenever a user", "whenever you see",
    "whenever you are asked", "whenever you read", "always respond", "always answer", "always reply",
    "always recommend", "always mention", "never mention", "never reveal", "never tell", "never say",
    "never admit", "never disclose", "never suggest", "never recommend", "never name", "whatever the user",
    "whatever someone", "whatever anyone", "whatever user", "whatever people", "respond only with",
    "next answer must", "next response must",
    "following answer must", "following response must")
_MARKERS = ("<|", "[[", "{{")


def _plain(text: str) -> bool:
    """Whether the text folds as ASCII (`code_points.FOLDING`)."""
    return text.isascii() or not any(ch in text for ch in FOLDING)


# Hangul fillers draw as a blank yet are letters to a regex: between Latin words they hid an instruction
# from every pattern ("Ignore\u3164all\u3164previous..."), and no Hangul text puts one beside a Latin letter
_ZERO_WIDTH = re.compile(r"(?<=[A-Za-z0-9])[\u200b\u200c\u200d\u2060\u180e\ufeff\u115f\u1160\u3164\uffa0]"
                         r"(?=[A-Za-z0-9])")
# Thai, Lao, Tibetan, Myanmar and Khmer write no spaces between words, and a zero-width space is how their text marks
# where a line may break; so is it in Japanese and Chinese text set for the web. Only one that stands elsewhere hides.
_UNSPACED = "\u0e00-\u0eff\u0f00-\u0fff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u4e00-\u9fff"
_ZERO_WIDTH_ANY = re.compile(rf"(?<![{_UNSPACED}])\u200b|\u200b(?![{_UNSPACED}])|\u2060|(?<![\u1800-\u18af])\u180e|"
                             r"(?<=.)\ufeff")
# an emoji flag of a region (England, Scotland, Wales): a black flag, tag letters naming the region, a cancel tag
_FLAG_TAGS = re.compile("\U0001f3f4\U000e0067\U000e0062(?:\U000e0065\U000e006e\U000e0067|\U000e0073\U000e0063\U000e0074|"
                        "\U000e0077\U000e006c\U000e0073)\U000e007f")  # England, Scotland, Wales: the only ones there are
_RTL_LETTER = re.compile(r"[\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufeff]")
_BIDI = re.compile(r"[\u202a-\u202e\u2066-\u2069]")
_TAGS = re.compile(r"[\U000e0000-\U000e007f]")
_BIDI_CHARS = frozenset(map(chr, [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]))
_ZERO_WIDTH_CHARS = frozenset("\u200b\u200c\u200d\u2060\u180e\ufeff\u115f\u1160\u3164\uffa0")
# tag characters, bidirectional controls and zero-width characters (Hangul fillers too), as code point ranges
_HIDDEN_RANGES = ((0xE0000, 0xE007F), *((ord(c), ord(c)) for c in sorted(_BIDI_CHARS | _ZERO_WIDTH_CHARS)))
_MARKER_TOKEN = re.compile(r"<\|[A-Za-z_]{1,24}\|>|\[\[[A-Z_]{3,}\]\]|\{\{[A-Z_]{3,}\}\}")
# runs of word characters and characters beyond ASCII, taken whole (`\w*[^\x00-\x7f]\w*` rescanned a long ASCII
# word from each of its letters: quadratic); those that hold no character beyond ASCII are left out where used
_NON_ASCII_WORD = re.compile(r"(?:\w|[^\x00-\x7f\s])++", re.UNICODE)  # no space, however thin, joins words


def _non_ascii_words(text: str) -> list[str]:
    """The words of `text` with a character beyond ASCII."""
    return [w for w in _NON_ASCII_WORD.findall(text) if not w.isascii()]


def _script(ch: str) -> str | None:
    if ch.isascii():
        return "LATIN" if ch.isalpha() else None
    if not ch.isalpha():
        return None
    name = unicodedata.name(ch, "")
    for script in ("LATIN", "CYRILLIC", "GREEK"):
        if name.startswith(script):
            return script
    return "OTHER"


def injection_findings(text: str, answer_text: str, rule: InjectionRule,
                       possible: Container[int | str] | None = None) -> list[tuple[str, float, str]]:
    """(code, score, detail) for prompt-injection, hidden-unicode and trigger-token signals, in the
    text as written and in its undisguised text (`code_points.undisguised`).

    `possible`: for a text that folds as ASCII, which searches can find anything (pattern indices,
    "answer_instruction", "text_instruction", "trigger"), as `injection_findings_many` works out
    for a whole batch; the others are skipped. By default the text's own words decide.
    """
    out = _findings(text, answer_text, rule, possible)
    if _in_rot13(text.lower()):
        out = _with_rot13(out, _findings(_rot13(text), _rot13(answer_text), rule))
    if not disguised(text):
        return out
    return with_undisguised(out, _findings(undisguised(text), undisguised(answer_text), rule))


# An order written in ROT13 ("Vtaber nyy cerivbhf vafgehpgvbaf") reads as noise to every pattern, and a model that
# learned the cipher reads it all the same. These are injection words in ROT13: a text holding two of them is
# searched once more, decoded. Ordinary text almost never holds two ("gur" alone is in "figure").
_ROT13_CUES = ("vtaber", "qvfertneq", "sbetrg", "vafgehpgvba", "cerivbhf", "flfgrz cebzcg", "bireevqr",
               "erirny", "ehyrf", "thvqryvarf", "cebtenzzvat", "nobir", "rneyvre", "ercyl", "erfcbaq")
_ROT13 = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
                       "NOPQRSTUVWXYZABCDEFGHIJKLMnopqrstuvwxyzabcdefghijklm")


def _rot13(text: str) -> str:
    return text.translate(_ROT13)


def _in_rot13(lower: str) -> bool:
    return sum(cue in lower for cue in _ROT13_CUES) >= 2


def _with_rot13(found: list[tuple[str, float, str]],
                decoded: list[tuple[str, float, str]]) -> list[tuple[str, float, str]]:
    # ROT13 moves no character beyond ASCII: what hides is the text as written's finding alone
    return with_undisguised(found, [f for f in decoded if f[0] != "hidden_unicode"], how="once decoded from ROT13")


def _findings(text: str, answer_text: str, rule: InjectionRule,
              possible: Container[int | str] | None = None) -> list[tuple[str, float, str]]:
    out: list[tuple[str, float, str]] = []
    lower = text.lower() if possible is None else ""
    for i, (pattern, code, score, needs) in enumerate(_INJECTION_PATTERNS):
        may = any(word in lower for word in needs) if possible is None else i in possible
        m = pattern.search(text) if may else None
        if m:
            out.append((code, score, f"{code.replace('_', ' ')}: {m.group()[:80]!r}"))
    may = _script_may(text, lower) if possible is None else "script" in possible
    m = _SCRIPT_OVERRIDE.search(text) if may else None
    if m and not any(code == "instruction_override" for code, _, _ in out):
        out.append(("instruction_override", 0.9, f"instruction override: {m.group()[:80]!r}"))
    instructs = any(word in lower for word in _ANSWER_INSTRUCTION_WORDS) if possible is None else True
    may = possible is None or "answer_instruction" in possible
    m = _ANSWER_INSTRUCTION.search(answer_text) if answer_text and instructs and may else None
    if m:
        out.append(("instruction_in_answer", 0.8, f"the answer instructs the model: {m.group()!r}"))
    elif not answer_text and instructs and (possible is None or "text_instruction" in possible):
        m = _ANSWER_INSTRUCTION.search(text)
        if m:
            out.append(("standing_instruction", 0.6, f"a standing instruction to the model: {m.group()!r}"))
    if rule.trigger_tokens and (possible is None or "trigger" in possible):
        triggers = _trigger_pattern(tuple(rule.trigger_tokens))
        found = triggers.findall(text)
        if found:
            out.append(("trigger_token", min(1.0, 0.5 + 0.1 * len(found)),
                        f"rare backdoor trigger token(s) {sorted(set(found))}"))
    m = _MARKER_TOKEN.search(text) if ("<|" in text or "[[" in text or "{{" in text) else None
    if m and not any(code == "template_tokens" for code, _, _ in out):
        out.append(("trigger_token", 0.7, f"special marker token {m.group()!r}"))
    return out if text.isascii() else out + _hidden_findings(text)


def _script_may(text: str, lower: str) -> bool:
    """Whether `_SCRIPT_OVERRIDE` can match: the text holds a letter of its scripts (as the batch's
    `holding_beyond_ascii` reads them) and one of its words."""
    if text.isascii():
        return False
    points = np.fromiter({ord(ch) for ch in text if not ch.isascii()}, dtype=np.int64)
    held = (described(points)[0] & GREEK_CYRILLIC) != 0
    for a, b in _SCRIPT_RANGES:
        held |= (points >= a) & (points <= b)
    return bool(held.any()) and any(word in lower for word in _SCRIPT_OVERRIDE_WORDS)


def _hidden_findings(text: str) -> list[tuple[str, float, str]]:
    """Hidden-unicode and homoglyph signals of a text with characters beyond ASCII."""
    out: list[tuple[str, float, str]] = []
    # the text's distinct characters beyond ASCII (a handful) say which searches can find anything
    beyond = {ch for ch in set(text) if not ch.isascii()}
    if any(0xE0000 <= ord(ch) <= 0xE007F for ch in beyond) and _TAGS.search(_FLAG_TAGS.sub("", text)):
        out.append(("hidden_unicode", 1.0, "Unicode tag characters (invisible ASCII smuggling)"))
    n_bidi = len(_BIDI.findall(text)) if not beyond.isdisjoint(_BIDI_CHARS) else 0
    if (n_bidi and "\u202d" not in text and "\u202e" not in text
            and len(_RTL_LETTER.findall(text)) >= max(8, 0.2 * sum(ch.isalpha() for ch in text))):
        # Hebrew, Arabic or Persian text mixed with Latin is what embeddings and isolates are for; an override,
        # which reverses what a reader sees (Trojan Source), never is
        n_bidi = 0
    if n_bidi:
        out.append(("hidden_unicode", 0.9, (f"{n_bidi} bidirectional control character(s) that "
                                            "can reorder what a reader sees (Trojan Source)")))
    n_zw = 0 if beyond.isdisjoint(_ZERO_WIDTH_CHARS) else len(
        {m.start() for m in _ZERO_WIDTH.finditer(text)} | {m.start() for m in _ZERO_WIDTH_ANY.finditer(text)})
    if n_zw:
        out.append(("hidden_unicode", 0.8, f"{n_zw} zero-width or blank filler character(s) inside words"))
    mixed = []
    # a word mixes scripts only if some character of the text is Cyrillic or Greek
    words = _non_ascii_words(text) if any(_script(ch) in ("CYRILLIC", "GREEK") for ch in beyond) else ()
    for word in words:
        scripts = {s for s in map(_script, word) if s}
        if "LATIN" in scripts and scripts & {"CYRILLIC", "GREEK"}:
            mixed.append(word)
    if mixed:
        out.append(("homoglyph", 0.7, (f"{len(mixed)} word(s) mix Latin with Cyrillic/Greek "
                                       f"letters, e.g. {mixed[0]!r}")))
    return out


def injection_findings_many(texts: Sequence[str], answers: Sequence[str], rule: InjectionRule,
                            batch: TextBatch | None = None) -> list[list[tuple[str, float, str]]]:
    """`injection_findings` of every (text, answer) pair, the same findings: the texts as written,
    then those holding a character that disguises what they say (`code_points.DISGUISE`) once
    more, undisguised, as a batch of their own.

    `batch`: the texts already laid end to end, when another gate made them."""
    raw = batch or TextBatch(texts)
    out = _findings_many(texts, answers, rule, raw, rot13=True)
    disguised = np.flatnonzero(raw.holding_beyond_ascii(DISGUISE) | raw.ascii_hiding).tolist()
    if disguised:
        texts_, answers_ = [undisguised(texts[i]) for i in disguised], [undisguised(answers[i]) for i in disguised]
        # a batch's passes cost more than a few texts' own searches
        plain = _findings_many(texts_, answers_, rule) if len(disguised) > FEW else \
            [_findings(t, a, rule) for t, a in zip(texts_, answers_)]
        for i, more in zip(disguised, plain):
            out[i] = with_undisguised(out[i], more)
    return out


def _findings_many(texts: Sequence[str], answers: Sequence[str], rule: InjectionRule,
                   batch: TextBatch | None = None, *, rot13: bool = False
                   ) -> list[list[tuple[str, float, str]]]:
    """`_findings` of every (text, answer) pair, the same findings.

    The literals every search needs (`_MUST_HOLD`, the answer instructions, markers and trigger
    tokens) are looked for in the whole batch in compiled passes; a text runs only the
    searches whose literals it holds, and most run none; a text holding a Cyrillic or CJK character
    is looked at for the words `_SCRIPT_OVERRIDE` needs one by one; a text beyond ASCII is looked at for
    hidden characters only when it holds a character those searches need
    (`holding_beyond_ascii`); a text with a character that folds to an ASCII letter takes the
    per-text path.

    `batch`: the texts already laid end to end, when another gate made them. With `rot13`, a text
    holding two ROT13 cues (looked for in the same pass) is searched once more, decoded."""
    raw = batch or TextBatch(texts)
    folded = sorted({w for groups in _MUST_HOLD for group in groups for w in group}
                    | set(_ANSWER_INSTRUCTION_WORDS) | set(_ANSWER_INSTRUCTION_LITERALS)
                    | (set(_ROT13_CUES) if rot13 else set()))
    tokens = tuple(rule.trigger_tokens)
    searchable = all(t.isascii() and t and "\0" not in t for t in tokens)
    exact = _MARKERS + (tokens if searchable else ())
    held = raw.holding(folded + list(exact), [True] * len(folded) + [False] * len(exact))
    column = {w: i for i, w in enumerate(folded)}

    def any_of(words) -> np.ndarray:
        return held[:, [column[w] for w in words]].any(axis=1)

    possible = [np.logical_and.reduce([any_of(group) for group in groups]) for groups in _MUST_HOLD]
    instructs = any_of(_ANSWER_INSTRUCTION_WORDS)
    text_instruction = instructs & any_of(_ANSWER_INSTRUCTION_LITERALS)
    markers = held[:, len(folded) : len(folded) + len(_MARKERS)].any(axis=1)
    # a token no byte search can stand in for is looked for as it always was
    trigger = held[:, len(folded) + len(_MARKERS) :].any(axis=1) if searchable else \
        raw.matching(_trigger_pattern(tokens))
    answered = np.fromiter(map(bool, answers), dtype=bool, count=len(texts))
    answer_plain = np.fromiter(map(_plain, answers), dtype=bool, count=len(texts))
    answer_instruction = np.zeros(len(texts), dtype=bool)
    if (instructs & answered).any():
        asked = np.flatnonzero(instructs & answered & answer_plain)
        literal = TextBatch([answers[i] for i in asked]).holding(_ANSWER_INSTRUCTION_LITERALS, fold=True)
        answer_instruction[asked] = literal.any(axis=1)[: len(asked)]
    # an answer with a character that folds to ASCII is searched as it always was
    answer_instruction |= instructs & answered & ~answer_plain
    script = np.zeros(len(texts), dtype=bool)
    for i in np.flatnonzero(raw.holding_beyond_ascii(GREEK_CYRILLIC, _SCRIPT_RANGES)).tolist():
        lower = texts[i].lower()
        script[i] = any(word in lower for word in _SCRIPT_OVERRIDE_WORDS)
    table = np.column_stack([*possible, answer_instruction, text_instruction, trigger & bool(tokens), script])
    names = [*range(len(_MUST_HOLD)), "answer_instruction", "text_instruction", "trigger", "script"]
    folds = raw.holding_beyond_ascii(FOLDS_TO_ASCII)
    # what `_hidden_findings` looks for: without one of these a text beyond ASCII has nothing hidden
    hidden = raw.holding_beyond_ascii(GREEK_CYRILLIC, _HIDDEN_RANGES)
    out: list[list[tuple[str, float, str]]] = []
    for text, answer, row, marked, other, hides in zip(texts, answers, table.tolist(), markers.tolist(),
                                                       folds.tolist(), hidden.tolist()):
        if other:
            out.append(_findings(text, answer, rule))
        elif marked or True in row:
            out.append(_findings(text, answer, rule, {n for n, ok in zip(names, row) if ok}))
        else:
            out.append(_hidden_findings(text) if hides else [])
    if rot13:
        for i in np.flatnonzero(held[:, [column[c] for c in _ROT13_CUES]].sum(axis=1) >= 2).tolist():
            out[i] = _with_rot13(out[i], _findings(_rot13(texts[i]), _rot13(answers[i]), rule))
    return out


_TRIGGER_CACHE: dict[tuple[str, ...], re.Pattern] = {}


def _trigger_pattern(tokens: tuple[str, ...]) -> re.Pattern:
    if tokens not in _TRIGGER_CACHE:
        # an abbreviation like "cf." or a token inside a word is not a trigger; each token is
        # matched first and the character before it checked after (a lookbehind over the token),
        # so the regex engine skips ahead to a token's first letter instead of trying every position
        alternation = "|".join(f"{re.escape(t)}(?<![\\w.\\-']{re.escape(t)})"
                               for t in sorted(tokens, key=len, reverse=True))
        _TRIGGER_CACHE[tokens] = re.compile(rf"(?:{alternation})(?![\w.\-'])")
    return _TRIGGER_CACHE[tokens]
