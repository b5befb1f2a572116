"""The personal-data gate: contacts, payment and identity numbers, keys and secrets, reported masked."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Collection, Container, Sequence

import numpy as np

from ledgerlm.validation.code_points import (
    DIGIT,
    DISGUISE,
    FOLDS_TO_ASCII,
    GREEK_CYRILLIC,
    disguised,
    undisguised,
)
from ledgerlm.validation.compiled import compiled
from ledgerlm.validation.gates.candidate import FEW, with_undisguised
from ledgerlm.validation.gates.text_batch import TextBatch


def luhn_valid(digits: str) -> bool:
    """The Luhn mod-10 check every payment card number carries (ISO/IEC 7812)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card_shaped(number: str, before: str) -> bool:
    """A Luhn-failing number still reads as a card when grouped like one or introduced as one.

    A mistyped or deliberately altered card number still discloses most of a real one, so such
    a number is personal payment data; a bare digit run that fails Luhn is far more often an
    order, tracking or account reference, and passes.
    """
    return bool(_CARD_GROUPS.match(number.strip()) or _CARD_CONTEXT.search(before))


def iban_valid(iban: str) -> bool:
    """ISO 13616 mod-97 check: move the first four characters to the end, letters to numbers."""
    s = iban.replace(" ", "").upper()
    if not 15 <= len(s) <= 34 or not s.isalnum():
        return False
    rearranged = s[4:] + s[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(number) % 97 == 1


def _entropy(s: str) -> float:
    counts = Counter(s)
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def _mask(s: str, keep: int = 2) -> str:
    s = s.strip()
    return f"{s[:keep]}…({len(s)} chars)"


# Most patterns start by consuming a character and check what precedes it after (a lookbehind
# over that character, or a first repetition written out): a pattern that starts with a
# character class lets the regex engine skip ahead to the next such character instead of
# trying a match at every position. Each matches exactly what its plain form would, e.g.
# _CARD is (?<![\d\-])(?:\d[ \-]?){12,18}\d(?![\d\-]) and _SSN (?<![\d\-])(?!000|666|9\d\d)\d{3}-...
# the name and domain may hold letters of any script ("josé@", "info@müller-bau.de", "Ивана@mail.ru")
_EMAIL = re.compile(r"(?<![\w.+-])[\w.%+-]{1,64}@[\w-]+(?:\.[\w-]+)*\.[^\W\d_]{2,24}\b")
# An address written so that a harvester's pattern misses it: "jane (at) example (dot) com",
# "jane[at]example[dot]org", "jane at example dot com", "jane@example(dot)com". A bracketed at or
# dot is never prose; a bare " at " is, so it needs a spelled-out dot after it, and a bare " dot "
# a common top-level domain after a word that can be a domain (`_email_obfuscated`).
# A bare " at " before a plain domain ("jane at example.com") reads like prose ("available at
# pypi.org"), so it is looked for only after a word that introduces an address (`_EMAIL_SPOKEN`).
_AT_BRACKETED = r"\s*(?:[(\[{<] ?(?i:at) ?[)\]}>]|[(\[{<]@[)\]}>])\s*"
_DOT_BRACKETED = r"\s*(?:[(\[{<] ?(?i:dot) ?[)\]}>]|[(\[{<]\.[)\]}>])\s*"
_DOT_ANY = rf"{_DOT_BRACKETED}|\s+(?i:dot)\s+|\s+\.\s+|\."
_EMAIL_OBFUSCATED = re.compile(
    rf"[A-Za-z0-9](?<![\w.+\-][A-Za-z0-9])[A-Za-z0-9._%+\-]{{0,63}}(?P<at>{_AT_BRACKETED}|\s+(?i:at)\s+|\s*@\s*)"
    rf"(?P<domain>[A-Za-z0-9\-]{{1,63}})(?:(?:{_DOT_ANY})[A-Za-z0-9\-]{{1,63}}){{0,3}}"
    rf"(?P<dot>{_DOT_ANY})(?P<tld>[A-Za-z]{{2,24}})(?![\w\-])")
_COMMON_TLDS = frozenset(
    "com org net edu gov mil int info biz io co ai app dev me tv us uk ca au nz ie de fr es it nl be ch at se no "
    "dk fi pl pt br mx ar cl ru ua cn jp kr in sg hk tw za eu email online site tech xyz".split())
# words a domain name is not, in prose that happens to say "at ... dot com"
_NOT_DOMAINS = frozenset("the a an this that these those his her its our their my your one each every no some "
                         "any".split())
# literals (lower case) one of which an obfuscated address cannot be written without: a bracketed
# at, or a spelled-out dot (the only dot a bare " at " or an "@" is looked for with); each begins
# with three characters prose seldom holds, which the batch search files needles under
_OBFUSCATION_WORDS = ("(at", "( at", "[at", "[ at", "{at", "{ at", "<at", "< at", "(@)", "[@]", "{@}", "<@>",
                      "dot", "(.)", "[.]", "{.}", "<.>", " @ ")


# "Email jane at example.com", "write to j.doe at mail.example.org": a word that introduces an
# address, then within the clause a name, a bare " at " and a plain domain with a common top-level
# domain (`_email_spoken`)
_EMAIL_SPOKEN = re.compile(
    r"\b(?:e-?mail(?:ed|ing|s)?|mail(?:ed|ing)?|contact(?:ed|ing)?|(?:writ(?:e|ing)|wrote)\s+to|reach(?:ed|ing)?|"
    r"message)\b(?P<between>[^.!?;\n]{0,40}?)(?<![\w.+'\u2019\-])(?P<local>[A-Za-z0-9][A-Za-z0-9._%+\-]{0,63})"
    r"\s+(?i:at)\s+(?P<domain>[A-Za-z0-9\-]{1,63})(?:\.[A-Za-z0-9\-]{1,63}){0,3}\.(?P<tld>[A-Za-z]{2,24})"
    r"(?![\w\-]|\.\w)", re.IGNORECASE)
# lower-case literals one of which `_EMAIL_SPOKEN` cannot match without (its introducing words), and
# the bare at it is looked for with (only with spaces: a tab or a line break around it is not looked for)
_SPOKEN_CUES = ("mail", "contact", "writ", "wrote", "reach", "message")
_SPOKEN_AT = " at "
# who or what is reached "at" a site rather than an address's name ("reach us at example.com",
# "contact the team at example.org")
_NOT_NAMES = frozenset("me us him her them you it one everyone someone anyone people staff team office desk "
                       "support sales help info admin".split())
_DETERMINERS = frozenset("the a an this that our your my their his her its".split())


def _email_spoken(m: re.Match) -> bool:
    """Whether an `_EMAIL_SPOKEN` match names an address rather than who is reached at a site."""
    before = m.group("between").split()
    return (m.group("local").lower() not in _NOT_NAMES and m.group("tld").lower() in _COMMON_TLDS
            and m.group("domain").lower() not in _NOT_DOMAINS
            and not (before and before[-1].lower() in _DETERMINERS))


def _email_obfuscated(m: re.Match) -> bool:
    """Whether an `_EMAIL_OBFUSCATED` match is an address, not a plain one or prose.

    A plain address is `_EMAIL`'s; after a bare " at " the last dot must be spelled out; a last
    dot spelled as a bare " dot ", or an "@" or a last dot set apart by spaces ("jane @ example . com"),
    must end in a common top-level domain after a word that can be a domain.
    """
    at_written, dot_written = m.group("at"), m.group("dot")
    at, dot = at_written.strip().lower(), dot_written.strip().lower()
    spaced = (dot == "." and dot_written != ".") or (at == "@" and at_written != "@")
    if dot == "dot" or spaced:
        return m.group("tld").lower() in _COMMON_TLDS and m.group("domain").lower() not in _NOT_DOMAINS
    if dot == ".":
        return at not in ("at", "@")
    return True


# each group's digits taken whole (possessive): a run of digits is never split again and again among the groups
_PHONE_INTL = re.compile(r"\+(?<![\w+]\+)\d{1,3}(?:[ .\-]?\(?\d{1,5}+\)?){2,6}(?!\w)")
_PHONE_NANP = re.compile(r"[(\d](?<![\w+][(\d])(?:(?<=\()\d{3}\)[ ]?|(?<=\d)\d{2}[\-. ])\d{3}[\-. ]\d{4}(?!\w|-\d)")
# A word that asks to be phoned, in several languages, then a few words that lead to the number ("call me on",
# "reach Priya at", "Appelez-moi au", "Telefon:", "電話番号は"), then the number as people group it nationally
_PHONE_CONTEXT = re.compile(
    r"(?:\b(?:(?:text|reach|contact)(?=\s+(?:me|us|him|her|them|(?-i:[A-Z][a-z]+))\b)|"
    r"phone|tel|telephone|mobile|cell|cellphone|call|ring|dial|whatsapp|fax|sms|"
    r"telefon\w*|tel[eé]fono|telefone|t[eé]l[eé]phone|handy|portable|celular|n[uú]mero|appelez|appelle|"
    r"ll[aá]ma(?:me|nos)?|ruf|bel|позвони\w*|звони\w*|телефон\w*)\b|電話(?:番号)?|电话(?:号码)?|전화(?:번호)?)"
    r"(?:[^\S\n]*(?:\b(?:me|us|him|her|them|on|at|au|al|op|an|unter|is|es|est|ist|mon|ma|mi|my|our|his|their|the|"
    r"number|no\.?|nr\.?|de|di|du|moi|mich|uns|мне|нам|es)\b|(?-i:[A-Z][a-z]+)|[:#\-\u2013\uff1a]|は)){0,4}"
    r"[^\S\n]*(\+?\(?[\d][\d ().\-]{7,20}\d)", re.IGNORECASE)
# ten or eleven digits in one run, with nothing to say they are a phone number but the words
# around them (`_PHONE_CUE`) and the North American or trunk-0 shape (`_PHONE_BARE_SHAPE`): a bare
# run is far more often an order, account or record number, so neither alone is enough
_PHONE_BARE = re.compile(r"\d(?<![\w+.\-/=$#\u20ac\u00a3\u00a5]\d)\d{9,10}(?![\w\-/]|[.,]\d)")
# NANP: area code and exchange start 2-9 (a Unix time, 1.0e9 to 2.0e9, starts with 1 and fails),
# an optional leading country code 1; or a national number after a trunk 0 (06 12 34 56 78, 07700 900123)
_PHONE_BARE_SHAPE = re.compile(r"1?[2-9]\d\d[2-9]\d{6}|0[1-9]\d{8,9}")
# words that introduce a phone number, within a clause before it; "number" only as someone's
_PHONE_CUE = re.compile(
    r"\b(?:phone|telephone|tel|mobile|cell|cellphone|call|called|calling|ring|dial|whatsapp|sms|fax|"
    r"text(?:ing)?\s+(?:me|us|him|her|them)|reach(?:ed)?\s+(?:me|us|him|her|them)|contact(?:\s+(?:me|us))?|"
    r"(?:my|our|his|her|their)\s+(?:number|digits)|telefon\w*|tel[eé]fono|handy|celular)\b", re.IGNORECASE)
# or one that names it right after: "4155550123 is my cell", "4155550123 (mobile)"
_PHONE_CUE_AFTER = re.compile(r"\W{0,3}(?:is\s+)?(?:(?:my|our|his|her|their)\s+)?"
                              r"(?:phone|cell|mobile|number|tel|whatsapp)\b", re.IGNORECASE)
# an amount or a measure, not a number to dial
_PHONE_UNIT = re.compile(r"\s?(?:%|(?:bytes?|[kmgt]i?b|[mnu]?s|seconds|usd|eur|dollars|euros|times|rows|records|"
                         r"items)\b)", re.IGNORECASE)
# 2**31 - 1, 2**32 and their kin are the limits a program calls and returns, never a number to dial
_MACHINE_LIMITS = frozenset(str(2**k + d) for k in range(30, 37) for d in (-1, 0))
_CLAUSE_END = re.compile(r"[.!?;]\s|\n")
_CARD = re.compile(r"\d(?<![\d\-]\d)[ \-]?(?:\d[ \-]?){11,17}\d(?![\d\-])")
# a card as people write it: 4-4-4-4(-3), or American Express's 4-6-5, with spaces or dashes
_CARD_GROUPS = re.compile(r"^\d{4}([ \-])\d{4}\1\d{4}\1\d{4}(?:\1\d{1,3})?$|^\d{4}([ \-])\d{6}\2\d{5}$")
_CARD_CONTEXT = re.compile(r"\b(?:card|visa|mastercard|master card|amex|american express|discover|maestro|"
                           r"credit|debit|cc|pan)\b\W{0,12}(?:number|no\.?|#)?\W{0,4}$", re.IGNORECASE)
_CARD_PREFIX = re.compile(r"^(?:4|5[1-5]|2[2-7]|3[47]|3[0689]|6(?:011|4[4-9]|5|2))")
# an IBAN is printed in capitals, yet a lower-case one ("de89 3704 ...") is the same account: one not
# in capitals must also hold twelve digits, check digits included, as every account number does
# (NL's, the fewest, has ten), so that lower-case prose with a
# digit or two ("mp34 file name here") is not taken for one
_IBAN = re.compile(r"[A-Za-z](?<!\w[A-Za-z])[A-Za-z]\d{2}(?: ?[A-Za-z0-9]{4}){2,7}(?: ?[A-Za-z0-9]{1,4})?\b")
# "123 45 6789" only after a word that names it: nine digits in 3-2-4 groups are also other numbers
_SSN_SPACED = re.compile(r"\b(?:ssn|social security(?: number| no\.?)?|ss#)\W{0,4}(?:(?:is|was|number|no\.?|#)\W{0,4}){0,2}(\d{3} \d{2} \d{4})(?![\d\-])",
                         re.IGNORECASE)
_SSN_WORDS = ("ssn", "social security", "ss#")
# a card number grouped by dots, 4.4.4.4: counted only when the Luhn check passes
_CARD_DOTTED = re.compile(r"\d(?<![\d.]\d)\d{3}\.\d{4}\.\d{4}\.\d{4}(?!\d|\.\d)")
_SSN = re.compile(r"\d(?<![\d\-]\d)\d\d-(?<!000-)(?<!666-)(?<!9\d\d-)(?!00)\d{2}-(?!0000)\d{4}(?![\d\-])")
_PRIVATE_KEY_BLOCK = re.compile(r"-----BEGIN (?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?-----")
_HEX64 = re.compile(r"[0-9a-fA-F](?<![0-9A-Za-z][0-9a-fA-F])(?:(?<=0)x[0-9a-fA-F]{64}|[0-9a-fA-F]{63})(?![0-9A-Za-z])")
_HASH_CONTEXT = re.compile(
    r"(?:hash|tx|txid|transaction|block|root|digest|sha(?:-?(?:1|224|256|384|512|3))?|commit|checksum|merkle|cid|"
    r"md5|blake2[bs]?|keccak(?:256)?|fingerprint|sum|integrity)\W{0,12}$"
    # "the SHA-256 of the tarball is <hex>": a digest word of its own, and nothing between that names a key
    r"|\b(?:hash|digest|sha(?:-?(?:1|224|256|384|512|3))?|checksum|md5|blake2[bs]?|keccak(?:256)?|fingerprint|"
    r"(?:sha(?:1|224|256|384|512)?|md5|b2)sum)\b"
    r"(?:(?!secret|private|seed|mnemonic|wallet|passw|signing)[^\n]){0,40}?(?:\b(?:is|was|are|reads)|[:=])\W{0,4}$",
    re.IGNORECASE)
# or named one right after it: "<hex> is the SHA-256 of the tarball", "<hex> (SHA-256)"
_HASH_AFTER = re.compile(r"\W{0,4}(?:(?:is|was)\s+)?(?:(?:the|its|a|an)\s+)?(?:sha-?\d*|md5|blake2\w*|keccak\w*|"
                         r"hash|digest|checksum|commit|fingerprint)\b", re.IGNORECASE)
# what sha256sum and its kin print: the digest, one or two spaces (a star for binary mode), the file name
# (possessive runs where they consume: two overlapping ones before a dot that never came backtracked quadratically;
# the lookahead must backtrack, to find "key" inside the name)
_HASH_LISTING = re.compile(r"(?: \*| {1,2})(?![\w./\-]*(?:key|secret|wallet|pem|priv))[\w/\-]*+\.[\w./\-]++(?:\s|$)",
                           re.IGNORECASE)
_AWS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b")
_TOKEN_FORMATS = re.compile(
    r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{50,}|xox[abposr]-[A-Za-z0-9\-]{10,}"
    r"|sk-(?:proj-|ant-)?[A-Za-z0-9_\-]{20,}|[sr]k_(?:live|test)_[A-Za-z0-9]{16,}"
    r"|AIza[0-9A-Za-z_\-]{35}|glpat-[A-Za-z0-9_\-]{20}"
    # a JSON Web Token: header and claims, both JSON objects in base64url ("eyJ" is '{"'), and a signature
    r"|eyJ[A-Za-z0-9_\-]{10,}\.eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{16,})")
# a JSON Web Key's private part: "d" (the private exponent or scalar) in an object that names its "kty"
_JWK_PRIVATE = re.compile(r'"d"\s*:\s*"[A-Za-z0-9_\-]{20,}"')
# the name may end an environment variable's ("AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN", "DB_PASSWORD"):
# after such a prefix the value must hold a letter, so "max_token = 4096000000000" is a number
_SECRET_ASSIGN = re.compile(
    r"(?<![A-Za-z0-9])(?P<prefixed>(?<=[_\-]))?(?:api[_\-]?key|apikey|secret(?:[_\-](?:access[_\-]?)?key)?|"
    r"access[_\-]?key|auth[_\-]?token|token|passw(?:or)?d|pass|private[_\-]?key)\b[\"']?\s*[:=]\s*[\"']?"
    r"([^\s\"',;]{12,})", re.IGNORECASE)
# what a program or a template assigns instead of a secret: a call, an attribute, a variable or a placeholder
_NOT_A_SECRET = re.compile(r"[()\[\]]|^[<${%/~]|^\./|^(?:os\.|process\.env|env\b|self\.|config\.|settings\.)|your|replace|"
                           r"change.?me|x{4}|\*{3}|\.{3}", re.IGNORECASE)
# a secret said rather than assigned: "my password is Sunshine2024!"
_SECRET_SAID = re.compile(r"\b(?:password|passcode|passphrase|pass phrase|pin code)\s+(?:is|was)\s*:?\s*[\"'\u201c]?"
                          r"(?P<value>[^\s\"'\u201d]{6,64})", re.IGNORECASE)
_SECRET_SAID_WORDS = ("password is", "password was", "passcode is", "passcode was", "passphrase is",
                      "passphrase was", "pass phrase is", "pin code is")
# credentials inside a URL: scheme://user:password@host
_URL_CREDENTIALS = re.compile(r"\b[a-z][a-z0-9+.\-]{1,20}://[^\s:/@]{1,64}:(?P<value>[^\s:/@]{4,128})@[\w\-.\[\]]+",
                              re.IGNORECASE)
# an HTTP bearer credential ("Authorization: Bearer abc...")
_BEARER = re.compile(r"\bbearer\s+(?P<value>[A-Za-z0-9._~+/\-]{20,}=*)", re.IGNORECASE)
_LETTER = re.compile(r"[A-Za-z]")


# Identity numbers of other countries. Named by a word before them ("Aadhaar:", "passport number", "NI number") a
# number of their shape is one; unnamed, only shapes too particular to be anything else, or that carry their own
# check: Spain's DNI letter (mod 23), Brazil's CPF digits, India's Aadhaar (Verhoeff), the UK's National Insurance
# number and Italy's codice fiscale
_ID_NAMED = re.compile(
    r"(?:\b(?:national insurance(?: number| no\.?)?|NI (?:number|no\.?)|aadhaa?r(?: number| no\.?)?|"
    r"social insurance(?: number| no\.?)?|passport(?: number| no\.?| #)?|codice fiscale|"
    r"num[eé]ro de s[eé]curit[eé] sociale|steuer-?id|steueridentifikationsnummer|tax (?:id|number)|"
    r"national id(?:entity)?(?: number| card| no\.?)?|identity (?:number|card)(?: number| no\.?)?|"
    r"social security(?: number| no\.?)?|"
    r"personalausweis(?:nummer)?|documento de identidad|(?-i:SSN|NINO|DNI|NIE|PAN|SIN|NIR|CPF|TIN|NIF|CURP|RUT))\b)"
    r"[\s:#.,\-]{0,6}(?:(?:is|was|number|no\.?|nr\.?)\s*[:#]?\s*)?"
    r"(?P<value>(?-i:[A-Z]{0,5})[ .\-]?\d(?:\d|[ .\-](?=\d)){2,22}(?:[ .\-]?[A-Za-z](?![A-Za-z]))?)", re.IGNORECASE)
# the names before a number (lower case), and the acronyms, which count only as written (upper case): "pan", "sin"
# and "tin" are inside too many words
_ID_WORDS = ("insurance", "ni number", "ni no", "aadha", "passport", "fiscale", "sociale", "steuer", "tax id",
             "tax number", "national id", "identity number", "identity card", "social security", "personalausweis",
             "identidad")
_ID_ACRONYMS = ("SSN", "NINO", "DNI", "NIE", "PAN", "SIN", "NIR", "CPF", "TIN", "NIF", "CURP", "RUT")
# the unnamed shapes, in one search: Spain's DNI/NIE, Brazil's CPF, India's Aadhaar, the UK's NI number, Italy's
# codice fiscale; each but the last holds six digits or more in one run that single spaces, dashes or dots split
_UNNAMED_ID = re.compile(
    r"\b(?:(?P<dni>(?P<x>[XYZ]-?)?(?P<n>\d{7,8})-?(?P<l>[A-HJ-NP-TV-Z]))"
    r"|(?P<cpf>\d{3}\.\d{3}\.\d{3}-\d{2})"
    r"|(?P<aadhaar>[2-9]\d{3}[ \-]\d{4}[ \-]\d{4})"
    r"|(?P<nino>(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D])"
    r"|(?P<cf>[A-Z]{6}\d{2}[A-EHLMPR-T]\d{2}[A-Z]\d{3}[A-Z]))\b")


def _verhoeff_valid(digits: str) -> bool:
    """The Verhoeff check India's Aadhaar numbers carry (dihedral group D5)."""
    d = [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 2, 3, 4, 0, 6, 7, 8, 9, 5], [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
         [3, 4, 0, 1, 2, 8, 9, 5, 6, 7], [4, 0, 1, 2, 3, 9, 5, 6, 7, 8], [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
         [6, 5, 9, 8, 7, 1, 0, 4, 3, 2], [7, 6, 5, 9, 8, 2, 1, 0, 4, 3], [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
         [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]]
    p = [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 5, 7, 6, 2, 8, 3, 0, 9, 4], [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
         [8, 9, 1, 6, 0, 4, 3, 5, 2, 7], [9, 4, 5, 3, 1, 2, 6, 8, 7, 0], [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
         [2, 7, 9, 3, 8, 0, 6, 4, 1, 5], [7, 0, 4, 6, 9, 1, 3, 2, 5, 8]]
    check = 0
    for i, ch in enumerate(reversed(digits)):
        check = d[check][p[i % 8][int(ch)]]
    return check == 0


def _cpf_valid(digits: str) -> bool:
    """Brazil's CPF: two check digits, each a weighted sum mod 11."""
    if len(set(digits)) == 1:
        return False
    for n in (9, 10):
        total = sum(int(digits[i]) * (n + 1 - i) for i in range(n))
        if (total * 10 % 11) % 10 != int(digits[n]):
            return False
    return True


def _identity_numbers(text: str, lower: str) -> list[tuple[str, float, str]]:
    """Identity numbers beyond the US SSN: named ones of any shape, unnamed ones by shape and check."""
    out = []
    taken: list[tuple[int, int]] = []
    if any(w in lower for w in _ID_WORDS) or any(w in text for w in _ID_ACRONYMS):
        for m in _ID_NAMED.finditer(text):
            value = m.group("value")
            digits = sum(ch.isdigit() for ch in value)
            # a number alone needs six digits ("passport renewed in 2023" names a year); after letters, four (PAN)
            if digits >= 6 or (value[0].isalpha() and digits >= 4):
                taken.append(m.span("value"))
                out.append(("national_id", 0.8, f"identity number named as one, ending {value[-2:]}"))
    for m in _UNNAMED_ID.finditer(text):
        if any(s < m.end() and m.start() < e for s, e in taken):
            continue
        kind = m.lastgroup if m.lastgroup in ("cpf", "aadhaar", "nino", "cf") else "dni"
        if kind == "dni":
            n, x = m.group("n"), m.group("x")
            if x:
                n = str("XYZ".index(x[0])) + n if len(n) == 7 else ""
            if len(n) != 8 or "TRWAGMYFPDXBNJZSQVHLCKE"[int(n) % 23] != m.group("l"):
                continue
            found = f"Spanish DNI/NIE ending {m.group('l')} (check letter valid)"
        else:
            digits = re.sub(r"\D", "", m.group())
            if (kind == "cpf" and not _cpf_valid(digits)) or (kind == "aadhaar" and not _verhoeff_valid(digits)):
                continue
            name = {"cpf": "Brazilian CPF", "aadhaar": "Aadhaar number", "nino": "UK National Insurance number",
                    "cf": "Italian codice fiscale"}[kind]
            found = f"{name} ending {m.group()[-2:]}"
        taken.append(m.span())
        out.append(("national_id", 0.9, found))
    return out


_NO_DIGITS = str.maketrans("", "", "0123456789")
_AWS_PREFIXES = ("AKIA", "ASIA", "AGPA", "AIDA", "AROA", "ANPA", "ANVA", "AIPA")
# a token format cannot match without one of these (lower-cased) prefixes
_TOKEN_WORDS = ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "xox", "sk-", "k_live_", "k_test_", "aiza",
                "glpat-", "eyj", "bearer")
_SECRET_WORDS = ("key", "secret", "token", "passw", "pass")


def personal_data_findings(text: str, kinds: Collection[str],
                           possible: Container[str] | None = None) -> list[tuple[str, float, str]]:
    """(kind, score, masked detail) for each personal datum or secret, in the text as written and in
    its undisguised text (`code_points.undisguised`: a card number in full-width or Arabic-Indic
    digits, an address split by a zero-width joiner); never echoes one in full.

    `possible`: for an ASCII text, which searches can find anything (`_SEARCHES`), as
    `personal_data_findings_many` works out for a whole batch; the others are skipped.
    """
    out = _findings(text, kinds, possible)
    return with_undisguised(out, _findings(undisguised(text), kinds)) if disguised(text) else out


def _findings(text: str, kinds: Collection[str], possible: Container[str] | None = None) -> list[tuple[str, float, str]]:
    def may(search: str) -> bool:
        return possible is None or search in possible

    out: list[tuple[str, float, str]] = []
    # cheap counts and substring tests first: most texts hold no run of digits and no key word,
    # so most patterns never scan them
    n_digits = len(text) - len(text.translate(_NO_DIGITS))
    lower = text.lower()
    if "email" in kinds and "@" in text:
        for m in _EMAIL.finditer(text):
            out.append(("email", 1.0, f"email address {_mask(m.group())} at offset {m.start()}"))
    if "email" in kinds and may("email_obfuscated") and any(w in lower for w in _OBFUSCATION_WORDS):
        at = 0
        while (m := _EMAIL_OBFUSCATED.search(text, at)) is not None:
            if not _email_obfuscated(m):
                # prose shaped like one ("Maria Lopez at maria.lopez(at)gmail(dot)com" first reads "Lopez at
                # maria.lopez") may hide the address that follows it: look again from the next word
                at = m.start() + 1
                continue
            at = m.end()
            out.append(("email", 0.9, f"email address written to escape filters {_mask(m.group())} "
                                      f"at offset {m.start()}"))
    if "email" in kinds and may("email_spoken") and _SPOKEN_AT in lower and any(w in lower for w in _SPOKEN_CUES):
        for m in _EMAIL_SPOKEN.finditer(text):
            if _email_spoken(m):
                found = m.group()[m.start("local") - m.start():]
                out.append(("email", 0.8, f"email address written with a bare at {_mask(found)} "
                                          f"at offset {m.start('local')}"))
    if "private_key_block" in kinds and "PRIVATE KEY" in text:
        for m in _PRIVATE_KEY_BLOCK.finditer(text):
            out.append(("private_key_block", 1.0, f"PEM private key block at offset {m.start()}"))
    if "private_key_block" in kinds and '"kty"' in text:
        for m in _JWK_PRIVATE.finditer(text):
            out.append(("private_key_block", 1.0, f"JSON Web Key with its private part at offset {m.start()}"))
    if "aws_access_key" in kinds and any(prefix in text for prefix in _AWS_PREFIXES):
        for m in _AWS_KEY_ID.finditer(text):
            out.append(("aws_access_key", 1.0, f"AWS access key id {_mask(m.group(), 4)}"))
    if "api_key" in kinds:
        for m in (_TOKEN_FORMATS.finditer(text) if may("token") and any(w in lower for w in _TOKEN_WORDS) else ()):
            out.append(("api_key", 1.0, f"API token {_mask(m.group(), 4)} at offset {m.start()}"))
        for m in (_SECRET_ASSIGN.finditer(text) if may("secret") and any(w in lower for w in _SECRET_WORDS) else ()):
            value = m.group(2)
            if m.group("prefixed") is not None and not _LETTER.search(value):
                continue
            if _entropy(value) >= 3.0 and not _TOKEN_FORMATS.search(value) and not _NOT_A_SECRET.search(value):
                out.append(("api_key", 0.9, f"secret assigned in text: {_mask(value)}"))
        if may("secret_said") and any(w in lower for w in _SECRET_SAID_WORDS):
            for m in _SECRET_SAID.finditer(text):
                value = m.group("value").rstrip(".,;:!?)")
                # a word alone ("my password is secret") tells nothing; one with a digit or a symbol does
                if (len(value) >= 6 and re.search(r"\d", value) and _LETTER.search(value)
                        and not _NOT_A_SECRET.search(value)):
                    out.append(("api_key", 0.8, f"password stated in text: {_mask(value)}"))
        if "://" in text and "@" in text:
            for m in _URL_CREDENTIALS.finditer(text):
                value = m.group("value")
                if not _NOT_A_SECRET.search(value) and value.lower() not in ("password", "pass", "secret"):
                    out.append(("api_key", 0.9, f"password inside a URL: {_mask(value)}"))
        if may("token") and "bearer" in lower:
            for m in _BEARER.finditer(text):
                value = m.group("value")
                if (re.search(r"\d", value) and _LETTER.search(value) and _entropy(value) >= 3.0
                        and not _NOT_A_SECRET.search(value) and not _TOKEN_FORMATS.search(value)):
                    out.append(("api_key", 0.9, f"bearer credential {_mask(value, 4)} at offset {m.start()}"))
    if "hex_private_key" in kinds and n_digits >= 8 and len(text) >= 64 and may("hex"):
        for m in _HEX64.finditer(text):
            before = text[max(0, m.start() - 60) : m.start()]
            line_start = not before or before.endswith("\n")
            if (_HASH_CONTEXT.search(before) or _HASH_AFTER.match(text, m.end())
                    or (line_start and _HASH_LISTING.match(text, m.end()))):
                continue  # transaction and content hashes are public, not secrets
            out.append(("hex_private_key", 0.9,
                        f"64-hex-digit value {_mask(m.group(), 4)} that is not labelled as a hash"))
    if "national_id" in kinds and n_digits >= 4 and may("ids"):
        out += _identity_numbers(text, lower)
    if n_digits < 9:  # no card, IBAN, phone or SSN has fewer digits
        return out
    card_spans = []
    if "credit_card" in kinds and may("card"):
        for m in _CARD.finditer(text):
            digits = re.sub(r"[ \-]", "", m.group())
            if not (13 <= len(digits) <= 19 and _CARD_PREFIX.match(digits)):
                continue
            if luhn_valid(digits):
                card_spans.append(m.span())
                out.append(("credit_card", 1.0, f"payment card number ending {digits[-4:]} (Luhn valid)"))
            elif _card_shaped(m.group(), text[max(0, m.start() - 30) : m.start()]):
                card_spans.append(m.span())
                out.append(("credit_card", 0.8, f"likely payment card number ending {digits[-4:]} "
                                                "(written as a card but fails the Luhn check)"))
    if "credit_card" in kinds and may("card") and "." in text:
        for m in _CARD_DOTTED.finditer(text):
            digits = m.group().replace(".", "")
            if _CARD_PREFIX.match(digits) and luhn_valid(digits):
                card_spans.append(m.span())
                out.append(("credit_card", 1.0, f"payment card number ending {digits[-4:]} (Luhn valid)"))
    if "iban" in kinds and may("iban"):
        for m in _IBAN.finditer(text):
            number = m.group()
            if not number.isupper() and sum(ch.isdigit() for ch in number) < 12:
                continue
            if iban_valid(number):
                out.append(("iban", 1.0, f"IBAN {_mask(m.group(), 4)} (mod-97 valid)"))
    if "national_id" in kinds and "-" in text and may("ssn"):
        for m in _SSN.finditer(text):
            out.append(("national_id", 0.8, f"US social security number pattern ending {m.group()[-4:]}"))
    if "national_id" in kinds and may("ssn") and any(w in lower for w in _SSN_WORDS):
        for m in _SSN_SPACED.finditer(text):
            out.append(("national_id", 0.8, f"US social security number ending {m.group(1)[-4:]}"))
    if "phone" in kinds:
        seen: list[tuple[int, int]] = list(card_spans)
        for pattern, search in ((_PHONE_INTL, "phone_intl"), (_PHONE_NANP, "phone_nanp"),
                                (_PHONE_CONTEXT, "phone_context"), (_PHONE_BARE, "phone_bare")):
            for m in (pattern.finditer(text) if may(search) else ()):
                span = m.span(m.lastindex or 0)
                number = m.group(m.lastindex or 0)
                n_digits = sum(ch.isdigit() for ch in number)
                if not 9 <= n_digits <= 15 or any(s < span[1] and span[0] < e for s, e in seen):
                    continue
                if pattern is _PHONE_BARE and not _bare_phone(text, m):
                    continue
                seen.append(span)
                tail = re.sub(r"\D", "", number)[-2:]
                out.append(("phone", 0.9, f"phone number ending {tail} at offset {span[0]}"))
    return out


def _bare_phone(text: str, m: re.Match) -> bool:
    """Whether a `_PHONE_BARE` digit run is a phone number: dialable in shape, not an amount, and
    introduced as a phone number in its clause or named as one right after it."""
    if (not _PHONE_BARE_SHAPE.fullmatch(m.group()) or m.group() in _MACHINE_LIMITS
            or _PHONE_UNIT.match(text, m.end())):
        return False
    # searched in place, not in a slice, so a word the window cuts ("micro|phone") is no cue
    start = max(0, m.start() - 48)
    for end in _CLAUSE_END.finditer(text, start, m.start()):
        start = end.end()
    return bool(_PHONE_CUE.search(text, start, m.start()) or _PHONE_CUE_AFTER.match(text, m.end()))


# the literals (lower case) of the words `_SECRET_ASSIGN` names, and `_PHONE_CONTEXT`'s words
_SECRET_NAMES = ("apikey", "api_key", "api-key", "secret", "accesskey", "access_key", "access-key", "token",
                 "passwd", "password", "privatekey", "private_key", "private-key", "pass")
# "ring", "bel" and "text" stand only as words a phone number follows: alone they are inside "string", "label" and
# every docstring
_PHONE_WORDS = ("phone", "tel", "mobile", "cell", "call", "whatsapp", "fax", "ring ", "dial", "sms", "text me",
                "text us", "text him", "text her", "reach", "contact", "handy", "portable", "celular", "numero",
                "mero", "appel", "llam", "mame", "manos", "ruf", "bel me", "bel ons")
_CJK = ((0x3040, 0x30FF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3))
_SEARCHES = ("token", "secret", "hex", "card", "iban", "ssn", "phone_intl", "phone_nanp", "phone_context",
             "phone_bare", "email_obfuscated", "email_spoken", "secret_said", "ids")


def personal_data_findings_many(texts: Sequence[str], kinds: Collection[str],
                                batch: TextBatch | None = None) -> list[list[tuple[str, float, str]]]:
    """`personal_data_findings` of every text, the same findings: the texts as written, then those
    holding a character that disguises what they say (`code_points.DISGUISE`) once more,
    undisguised, as a batch of their own.

    `batch`: the texts already laid end to end, when another gate made them."""
    raw = batch or TextBatch(texts)
    out = _findings_many(texts, kinds, raw)
    hiding = np.flatnonzero(raw.holding_beyond_ascii(DISGUISE) | raw.ascii_hiding).tolist()
    if hiding:
        plain = [undisguised(texts[i]) for i in hiding]
        # a batch's passes cost more than a few texts' own searches
        more = _findings_many(plain, kinds) if len(plain) > FEW else [_findings(t, kinds) for t in plain]
        for i, found in zip(hiding, more):
            out[i] = with_undisguised(out[i], found)
    return out


def _findings_many(texts: Sequence[str], kinds: Collection[str],
                   batch: TextBatch | None = None) -> list[list[tuple[str, float, str]]]:
    """`_findings` of every text, the same findings.

    Compiled passes over the batch find the literals and number shapes each pattern needs
    (a card's 13 digits in one run, 64 hex digits, an IBAN's two capitals and two digits, an
    SSN's 3-2-4 digits, a phone's 3-4 digit tail, + before a digit or ten digits in one run, a
    bracketed at or a spelled-out dot); a text runs only the
    searches it could match, and most run none. The rare text with a digit past ASCII or a
    character that folds to an ASCII letter is cleared by its `@`, key words and digit count and
    otherwise takes the per-text path.

    `batch`: the texts already laid end to end, when another gate made them."""
    raw = batch or TextBatch(texts)
    literal = ("@", "PRIVATE KEY", '"kty"', *_AWS_PREFIXES, *_ID_ACRONYMS)
    folded = (_TOKEN_WORDS + _SECRET_WORDS + _SECRET_NAMES + _PHONE_WORDS + _OBFUSCATION_WORDS + _SPOKEN_CUES
              + (_SPOKEN_AT,) + _SECRET_SAID_WORDS + _ID_WORDS)
    held = raw.holding(literal + folded + (":", "="), [False] * len(literal) + [True] * len(folded) + [False] * 2)
    shapes = _number_shapes(raw._bytes, raw._byte_starts, raw._byte_lengths)
    digits = shapes[:, 0]
    n_literal, n_token, n_secret, n_names = len(literal), len(_TOKEN_WORDS), len(_SECRET_WORDS), len(_SECRET_NAMES)
    found = held[:, :n_literal].any(axis=1)
    token = held[:, n_literal : n_literal + n_token].any(axis=1)
    names = n_literal + n_token + n_secret
    secret = held[:, names : names + n_names].any(axis=1) & held[:, -2:].any(axis=1)
    cues = names + n_names + len(_PHONE_WORDS)
    # the phone words past ASCII (Cyrillic, Japanese, Chinese, Korean) are looked for per text, in the few that hold them
    phone_context = held[:, names + n_names : cues].any(axis=1) | raw.holding_beyond_ascii(GREEK_CYRILLIC, _CJK)
    spoken_at = cues + len(_OBFUSCATION_WORDS)
    obfuscated = held[:, cues:spoken_at].any(axis=1)
    spoken = held[:, spoken_at : spoken_at + len(_SPOKEN_CUES)].any(axis=1) & held[:, spoken_at + len(_SPOKEN_CUES)]
    said_at = spoken_at + len(_SPOKEN_CUES) + 1
    said = held[:, said_at : said_at + len(_SECRET_SAID_WORDS)].any(axis=1)
    ids_at = said_at + len(_SECRET_SAID_WORDS)
    acronyms = n_literal - len(_ID_ACRONYMS)
    named_id = held[:, ids_at : ids_at + len(_ID_WORDS)].any(axis=1) | held[:, acronyms:n_literal].any(axis=1)
    numbered = digits >= 9  # no card, IBAN, phone or identity number has fewer digits
    table = np.column_stack([token, secret, (digits >= 8) & (shapes[:, 2] >= 64), numbered & (shapes[:, 1] >= 13),
                             numbered & (shapes[:, 3] > 0), numbered & (shapes[:, 4] > 0),
                             numbered & (shapes[:, 5] > 0), numbered & (shapes[:, 6] > 0), numbered & phone_context,
                             numbered & (shapes[:, 1] >= 10), obfuscated, spoken, said,
                             ((digits >= 4) & named_id) | (shapes[:, 1] >= 6)])
    # a text with a digit past ASCII (which \\d matches) or a character that folds to an ASCII
    # letter is not what the byte passes saw; any other text is, whatever else it holds
    unseen = raw.holding_beyond_ascii(DIGIT | FOLDS_TO_ASCII)
    out: list[list[tuple[str, float, str]]] = []
    for text, row, literal_found, other in zip(texts, table.tolist(), found.tolist(), unseen.tolist()):
        if other:
            lower = text.lower()
            suspect = (literal_found or any(w in lower for w in _TOKEN_WORDS + _SECRET_WORDS + _OBFUSCATION_WORDS
                                            + _SPOKEN_CUES + _SECRET_SAID_WORDS)
                       or digits[len(out)] >= 4)
            out.append(_findings(text, kinds) if suspect else [])
        elif literal_found or True in row:
            out.append(_findings(text, kinds, {n for n, ok in zip(_SEARCHES, row) if ok}))
        else:
            out.append([])
    return out


@compiled
def _number_shapes(data, starts, lengths):
    """Per text, as columns: its digits; the most digits in one run that single spaces or
    dashes may split (a card number); the longest run of hex digits; and how often an IBAN's
    start (two capitals, two digits), an SSN's ddd-dd-dddd, a + before a digit and a phone
    number's tail (ddd, one of -. or space, dddd) occur. Every class is ASCII: in UTF-8 a
    character past ASCII is none of them."""
    out = np.zeros((len(starts), 7), dtype=np.int64)

    def digit(c):
        return 48 <= c <= 57

    def letter(c):
        return 65 <= c <= 90 or 97 <= c <= 122

    for d in range(len(starts)):
        s, e = starts[d], starts[d] + lengths[d]
        digits = chain = best_chain = gap = hex_run = best_hex = 0
        iban = ssn = plus = tail = 0
        for k in range(s, e):
            c = data[k]
            if digit(c):
                digits += 1
                if gap > 1:
                    chain = 0
                chain += 1
                gap = 0
                best_chain = max(best_chain, chain)
                if k + 7 < e and digit(data[k + 1]) and digit(data[k + 2]):
                    sep = data[k + 3]
                    if ((sep == 45 or sep == 46 or sep == 32) and digit(data[k + 4]) and digit(data[k + 5])
                            and digit(data[k + 6]) and digit(data[k + 7])):
                        tail += 1
                    if (k + 10 < e and (sep == 45 or sep == 32) and digit(data[k + 4]) and digit(data[k + 5])
                            and data[k + 6] == sep and digit(data[k + 7]) and digit(data[k + 8])
                            and digit(data[k + 9]) and digit(data[k + 10])):
                        ssn += 1
            elif c == 32 or c == 45 or c == 46:
                gap += 1
            else:
                chain = gap = 0
            if digit(c) or 97 <= c <= 102 or 65 <= c <= 70:
                hex_run += 1
                best_hex = max(best_hex, hex_run)
            else:
                hex_run = 0
            if letter(c) and k + 3 < e and letter(data[k + 1]) and digit(data[k + 2]) and digit(data[k + 3]):
                iban += 1
            if c == 43 and k + 1 < e and digit(data[k + 1]):
                plus += 1
        out[d, 0], out[d, 1], out[d, 2] = digits, best_chain, best_hex
        out[d, 3], out[d, 4], out[d, 5], out[d, 6] = iban, ssn, plus, tail
    return out
