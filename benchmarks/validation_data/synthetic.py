"""Generated clean records: template sentences over eight topics (classification and Q&A), the source the gates were first tuned on."""

from __future__ import annotations

import random


def _words(s: str) -> list[str]:
    return s.split()


TOPICS = {
    "sports": {
        "nouns": _words("match team coach striker goalkeeper league season stadium referee tournament "
                        "championship defender midfielder trophy fans training injury transfer penalty "
                        "playoff captain marathon sprinter racket court"),
        "verbs": _words("won lost defended scored trained qualified celebrated tackled substituted "
                        "dominated equalised appealed"),
        "adjs": _words("decisive unbeaten physical tactical dramatic fierce rookie veteran "
                        "offensive defensive"),
        "names": _words("United Rovers Athletic Wanderers Falcons Tigers Olympians Harriers")},
    "science": {
        "nouns": _words("experiment hypothesis molecule protein telescope galaxy enzyme genome particle "
                        "laboratory sample reactor fossil climate neuron bacteria isotope orbit vaccine "
                        "catalyst crystal microscope spectrum"),
        "verbs": _words("measured observed synthesised sequenced detected replicated modelled isolated "
                        "calibrated published predicted confirmed"),
        "adjs": _words("peer-reviewed quantum molecular cellular experimental theoretical genetic "
                        "thermal statistical robust"),
        "names": _words("CERN Hubble Curie Darwin Kepler Mendel Faraday Planck")},
    "finance": {
        "nouns": _words("portfolio dividend bond equity inflation interest mortgage budget revenue "
                        "earnings shareholder merger audit liquidity pension loan credit deficit tariff "
                        "currency valuation broker hedge"),
        "verbs": _words("invested hedged audited borrowed diversified refinanced repaid forecast "
                        "underwrote rebalanced taxed traded"),
        "adjs": _words("quarterly fiscal volatile long-term leveraged regulatory annual taxable "
                        "bullish bearish"),
        "names": _words("Nasdaq Treasury Moody FTSE Nikkei Eurostat Fed Basel")},
    "cooking": {
        "nouns": _words("recipe dough sauce oven skillet garlic onion broth pastry marinade spice "
                        "flour butter basil risotto dumpling omelette simmer casserole glaze vinegar "
                        "saffron yeast"),
        "verbs": _words("baked simmered roasted whisked kneaded seasoned grilled braised sauteed "
                        "marinated folded caramelised"),
        "adjs": _words("crispy tender savoury fragrant creamy golden rustic spicy homemade "
                        "slow-cooked"),
        "names": _words("Provence Tuscany Oaxaca Sichuan Normandy Kyoto Bombay Andalusia")},
    "travel": {
        "nouns": _words("itinerary passport hostel flight luggage ferry museum beach village hike "
                        "visa backpack railway guidebook airport cathedral harbour island trail "
                        "souvenir excursion lagoon"),
        "verbs": _words("booked explored visited toured hiked boarded wandered photographed camped "
                        "sailed navigated checked"),
        "adjs": _words("scenic remote crowded historic budget coastal mountainous tropical "
                        "overnight guided"),
        "names": _words("Lisbon Patagonia Kyoto Marrakesh Reykjavik Bali Dubrovnik Cusco")},
    "technology": {
        "nouns": _words("server database compiler laptop smartphone firmware algorithm network router "
                        "processor kernel browser encryption cloud cluster interface sensor battery "
                        "chipset framework repository container bandwidth"),
        "verbs": _words("deployed compiled debugged encrypted upgraded benchmarked patched rebooted "
                        "virtualised indexed cached refactored"),
        "adjs": _words("open-source scalable wireless embedded distributed latency-sensitive "
                        "lightweight modular legacy secure"),
        "names": _words("Linux Postgres Kubernetes Rust Python Android ARM RISC-V")},
    "health": {
        "nouns": _words("patient clinic diagnosis therapy symptom nutrition vitamin exercise sleep "
                        "blood pressure allergy surgeon nurse prescription recovery diet fever "
                        "hospital screening cholesterol posture hydration"),
        "verbs": _words("prescribed diagnosed treated monitored vaccinated rehabilitated screened "
                        "examined recovered stretched consulted referred"),
        "adjs": _words("chronic acute preventive clinical mental cardiovascular dietary "
                        "postoperative paediatric moderate"),
        "names": _words("WHO Mayo Hopkins NHS Cochrane Lancet Pasteur Salk")},
    "music": {
        "nouns": _words("album guitar melody chorus orchestra concert drummer lyric symphony vinyl "
                        "festival rhythm harmony tempo pianist violin producer studio ballad "
                        "soundtrack encore choir"),
        "verbs": _words("recorded composed performed rehearsed mixed toured sampled arranged improvised "
                        "released conducted harmonised"),
        "adjs": _words("acoustic melodic upbeat orchestral experimental soulful live classical "
                        "electronic haunting"),
        "names": _words("Abbey Motown Vienna Nashville Berklee Juilliard Glastonbury Montreux")},
}
GENERIC_NOUNS = _words("report plan week group city result change idea reason story family evening")
PEOPLE = _words("Ana Ben Chloe Dmitri Elena Farid Grace Hiro Ines Jonas Kemi Luca Maya Nikhil Olga "
                "Pedro Quinn Rosa Sami Tara Umar Vera Wen Xavier Yara Zoe")
TIMES = ["last week", "in {y}", "on Monday", "this spring", "after {n} days", "before the deadline",
         "during the night", "over the weekend", "in early {m}", "for {n} hours"]
MONTHS = _words("January February March April May June July August September October November December")

SENTENCES = [
    "The {adj} {noun} {verb} the {noun2} {time}.",
    "{person} said the {noun} was {adj} after the {noun2} {verb2} {time}.",
    "Experts in {name} {verb} a {adj} {noun} that changed the {gnoun}.",
    "Our {gnoun} {verb} {n} {noun}s and found the {noun2} surprisingly {adj}.",
    "According to {person}, every {adj} {noun} needs a {noun2} and a clear {gnoun}.",
    "{person} and {person2} {verb} the {noun} near {name} {time}.",
    "It took {n} attempts before the {noun} {verb2} and the {noun2} looked {adj}.",
    "A {adj} {noun} from {name} {verb} the {gnoun} with {n} {noun2}s.",
    "Why the {noun} {verb} so {adv} remains a {adj} question for the {gnoun}.",
    "The {gnoun} ended when the {adj} {noun2} {verb2} the {noun}.",
    "{person} {verb} the {noun2} {adv}, then compared it with the {adj} {noun}.",
    "Nobody expected the {noun} to be this {adj}, {person} admitted {time}.",
]
ADVERBS = _words("quickly carefully rarely openly slowly boldly quietly twice again finally")
QUESTIONS = [
    "How should I handle a {adj} {noun} when the {noun2} is {adj2}?",
    "What is the difference between a {noun} and a {adj} {noun2}?",
    "Why would {person} say the {noun} {verb} too {adv}?",
    "Which {noun2} works best for a {adj} {noun} in {name}?",
    "Can a {noun} be {adj} if the {noun2} {verb} {time}?",
    "What happens to the {noun} after the {noun2} is {verb}?",
]
LEET = {"a": "4", "e": "3"}


def _fill(template: str, topic: dict, rng: random.Random, mix: float = 0.0, about: dict | None = None) -> str:
    """Fill a sentence template; each slot draws from another topic with probability `mix`,
    so topics overlap the way real categories do and label noise is not trivially separable.
    `about` fixes some slots (an answer speaks of what its question asked)."""
    pick = rng.choice

    def vocab(kind: str) -> list[str]:
        src = TOPICS[pick(list(TOPICS))] if rng.random() < mix else topic
        return src[kind]

    noun, noun2 = pick(vocab("nouns")), pick(vocab("nouns"))
    adj, adj2 = pick(vocab("adjs")), pick(vocab("adjs"))
    verb, verb2 = pick(vocab("verbs")), pick(vocab("verbs"))
    person, person2 = rng.sample(PEOPLE, 2)
    time_ = pick(TIMES).format(y=rng.randint(1990, 2025), n=rng.randint(2, 90), m=pick(MONTHS))
    slots = dict(noun=noun, noun2=noun2, adj=adj, adj2=adj2, verb=verb, verb2=verb2, person=person,
                 person2=person2, name=pick(vocab("names")), gnoun=pick(GENERIC_NOUNS), time=time_,
                 n=rng.randint(2, 400), adv=pick(ADVERBS))
    return template.format(**(slots | (about or {})))


def _cap(s: str) -> str:
    return s[0].upper() + s[1:]


def make_classification(topic: str, rng: random.Random) -> dict:
    t = TOPICS[topic]
    sents = [_cap(_fill(s, t, rng, mix=0.4)) for s in rng.sample(SENTENCES, rng.randint(2, 4))]
    return {"text": " ".join(sents), "label": topic}


def make_qa(topic: str, rng: random.Random) -> dict:
    t = TOPICS[topic]
    pick = rng.choice
    # the answer talks about the things the question asks about, as answers do
    about = {"noun": pick(t["nouns"]), "noun2": pick(t["nouns"]), "adj": pick(t["adjs"]), "name": pick(t["names"])}
    q = _cap(_fill(rng.choice(QUESTIONS), t, rng, about=about))
    a = " ".join(_cap(_fill(s, t, rng, about=about)) for s in rng.sample(SENTENCES, rng.randint(2, 3)))
    return {"question": q, "answer": a}


def make_clean(rng: random.Random) -> dict:
    topic = rng.choice(list(TOPICS))
    return make_classification(topic, rng) if rng.random() < 0.55 else make_qa(topic, rng)
